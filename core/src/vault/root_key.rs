//! Complete erasure: `rotate_root_key` re-wraps every key the custody holds
//! under a new root key (`RootRotation::commit`, atomic: after a crash the
//! vault opens with exactly one of the two keys, and the `WrongKey` of the
//! other says which). Once the caller destroys the old root key, nothing
//! wrapped under it (old copies of `keys/`, old blocks on a flash disk) is
//! of use to anyone. The blind index has a key of its own, which the
//! rotation re-wraps like any other (`index_key` replaces it on its own
//! schedule).
//!
//! Vaults rotated by the code before the index had its own key staged a
//! new blind index first, under a `RotationMarker` ('K'); a rotation that
//! code left cut short is finished or dropped at open
//! ([`Engine::finish_root_rotation`]).

use crate::codec;
use crate::crypto::RootKey;
use crate::error::{Error, Result};
use crate::layout::{Key, RotationMarker};
use crate::store::Batch;

use super::audited::{Commit, Op};
use super::{lock, Engine, Vault};

impl Vault {
    /// Re-wraps every live key under `new`; `progress(done, total)` is
    /// called along the way. Every other operation waits meanwhile. From
    /// return on, only `new` opens the vault: keep it before calling this.
    pub fn rotate_root_key(&self, new: &RootKey, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let engine = &self.engine;
        engine.audited(Op::RotateRootKey, Commit::Always, |call| {
            // Which key was retired from use, and which took over: how
            // `erasure_completion` later finds the key to check.
            let old = lock(&engine.root_name).clone();
            call.entry.detail = Some(
                format!(
                    "from {} to {}",
                    old.as_deref().unwrap_or("unknown"),
                    new.public_name()
                )
                .into(),
            );
            engine.rotate_root_key(new, progress)?;
            *lock(&engine.root_name) = Some(new.public_name());
            Ok(())
        })
    }
}

impl Engine {
    fn rotate_root_key(&self, new: &RootKey, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        // Quiesce: no expiry run, no writer of any subject, no blind-index
        // or day-key writer.
        let _expire = lock(&self.locks.expire);
        let _stripes = self.locks.all_stripes();
        let _blind = lock(&self.locks.blind);
        let _day = lock(&self.locks.day);
        let rotation = self.keys.custody.begin_rotation(new)?;
        if rotation.key_check() == self.keys.custody.key_check() {
            return Err(Error::invalid(
                "the new root key is the one in use: nothing to rotate",
            ));
        }
        // Everything written so far is durable first: the custody's commit
        // is the rotation's only step.
        self.make_durable()?;
        rotation.commit(self.now(), progress)
    }

    /// At open: finishes a rotation the code before the index had its own
    /// key left cut short (a `RotationMarker` beside staged entries), or
    /// drops it.
    pub(super) fn finish_root_rotation(&self) -> Result<()> {
        let Some(bytes) = self.store.get(&Key::Rotation.encode())? else {
            return Ok(());
        };
        let marker: RotationMarker = codec::decode(&bytes, "rotation marker")?;
        if marker.new_key_check == self.keys.custody.key_check() {
            let mut batch = Batch::default();
            batch.remove(Key::Rotation.encode());
            self.swap_staged_blind_index(batch)?;
            self.make_durable()
        } else {
            self.drop_staged_index()?;
            let mut batch = Batch::default();
            batch.remove(Key::Rotation.encode());
            self.store.apply(batch)?;
            self.make_durable()
        }
    }
}
