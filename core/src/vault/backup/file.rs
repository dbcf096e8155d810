//! The backup file, frame by frame (its format is in `vault::backup`'s
//! module doc): [`Writer`] seals and writes, [`Reader`] checks and opens.

use super::*;

/// Writes a backup file frame by frame.
pub(super) struct Writer<'a> {
    out: std::io::BufWriter<std::fs::File>,
    key: &'a SecretKey,
    header_hash: [u8; 32],
    next: u64,
    bytes: u64,
    path: &'a Path,
}

impl<'a> Writer<'a> {
    pub(super) fn new(
        file: std::fs::File,
        header: &Header,
        key: &'a SecretKey,
        path: &'a Path,
    ) -> Result<Writer<'a>> {
        let header_bytes = serde_json::to_vec(header)
            .map_err(|e| Error::internal(format!("serializing a backup header: {e}")))?;
        let mut w = Writer {
            out: std::io::BufWriter::new(file),
            key,
            header_hash: sha256(&header_bytes),
            next: 0,
            bytes: 0,
            path,
        };
        w.write(MAGIC)?;
        w.write(&[FORMAT])?;
        w.write(&(header_bytes.len() as u32).to_le_bytes())?;
        w.write(&header_bytes)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    pub(super) fn frame(&mut self, frame: &Frame) -> Result<()> {
        // What a frame holds is sealed already (records under subject keys,
        // keys under the root key): the backup key seals it once more.
        let plain = codec::encode(frame)?;
        let sealed = crypto::seal(self.key, &frame_aad(&self.header_hash, self.next), &plain)?;
        self.next += 1;
        self.write(&(sealed.len() as u32).to_le_bytes())?;
        self.write(&sealed)
    }

    pub(super) fn finish(self) -> Result<u64> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        Ok(self.bytes)
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

/// Reads a backup file frame by frame.
pub(super) struct Reader {
    input: std::io::BufReader<std::fs::File>,
    pub(super) header: Header,
    header_hash: [u8; 32],
    next: u64,
    name: String,
}

impl Reader {
    pub(super) fn open(path: &Path) -> Result<Reader> {
        let name = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
        let mut input = std::io::BufReader::new(file);
        let mut magic = [0u8; 10];
        read_exact(&mut input, &mut magic, &name)?;
        if &magic[..9] != MAGIC {
            return Err(Error::corrupt(format!("{name} is not a shredvault backup")));
        }
        if magic[9] != FORMAT {
            return Err(Error::corrupt(format!(
                "{name} is a backup of format {}, which this version does not read",
                magic[9]
            )));
        }
        let mut len = [0u8; 4];
        read_exact(&mut input, &mut len, &name)?;
        let len = u32::from_le_bytes(len);
        if len > MAX_HEADER {
            return Err(Error::corrupt(format!("{name}: its header is too long")));
        }
        let mut bytes = vec![0u8; len as usize];
        read_exact(&mut input, &mut bytes, &name)?;
        let header: Header = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("{name}: its header does not read: {e}")))?;
        Ok(Reader {
            input,
            header,
            header_hash: sha256(&bytes),
            next: 0,
            name,
        })
    }

    /// The next frame; `None` at the end of the file.
    pub(super) fn frame(&mut self, key: &SecretKey) -> Result<Option<Frame>> {
        let mut len = [0u8; 4];
        match self.input.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => read_exact(&mut self.input, &mut len[1..], &self.name)?,
            Err(e) => return Err(Error::io(format!("reading {}", self.name), e)),
        }
        let len = u32::from_le_bytes(len);
        if len > MAX_FRAME {
            return Err(Error::corrupt(format!(
                "{}: frame {} claims {len} bytes",
                self.name, self.next
            )));
        }
        let mut sealed = vec![0u8; len as usize];
        read_exact(&mut self.input, &mut sealed, &self.name)?;
        let plain = crypto::open(
            key,
            &frame_aad(&self.header_hash, self.next),
            &sealed,
            &format!("frame {} of {}", self.next, self.name),
        )?;
        self.next += 1;
        Ok(Some(codec::decode(&plain, "backup frame")?))
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], name: &str) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(format!("{name} is cut short"))
        } else {
            Error::io(format!("reading {name}"), e)
        }
    })
}
