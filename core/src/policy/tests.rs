use super::{CalendarSpan, Clause, Event, OnErasureRequest, Policy, RuleKind, SpanUnit};
use crate::error::ErrorKind;

const DESIGN_EXCERPT: &str = r#"
[purposes.account_admin]
description = "Provide the products and services and administer the account"
[purposes.marketing]
description = "Marketing"
[purposes.sale]
description = "Sale"
sale = true
[purposes.certificate_validation]
[purposes.fraud_prevention]
[purposes.codeguard]
[purposes.security]

[categories.certificate]
description = "Information provided to validate and issue a certificate"
legal_basis = "legitimate_interest"
purposes = ["certificate_validation", "fraud_prevention"]
on_erasure_request = "retain"
retention = [
  { after = "last_certificate_end", keep = "15y", if_flag = "qualified_certificate" },
  { after = "last_certificate_end", keep = "7y" },
]

[categories.codeguard]
legal_basis = "contract"
purposes = ["codeguard"]
retention = [{ earliest = [ { after = "erasure_requested" }, { after = "agreement_end" } ] }]

[categories.purchased_leads]
legal_basis = "legitimate_interest"
purposes = ["marketing"]
retention = [{ latest = [ { after = "agreement_end", keep = "7y" }, { after = "erasure_requested" } ] }]

[categories.marketing_contact]
legal_basis = "consent"
purposes = ["marketing"]
retention = [{ until = "consent_withdrawn" }]

[categories.usage_log]
legal_basis = "legitimate_interest"
purposes = ["security"]
retention = [{ after = "collected", keep = "13mo" }]
"#;

#[test]
fn parses_the_design_excerpt() {
    let p = Policy::parse(DESIGN_EXCERPT, "p.toml").unwrap();
    let cert = p.category("certificate").unwrap();
    assert_eq!(cert.on_erasure_request, OnErasureRequest::Retain);
    assert_eq!(cert.retention.len(), 2);
    assert_eq!(
        cert.retention[0].if_flag.as_deref(),
        Some("qualified_certificate")
    );
    assert!(cert.allows("legal_claims"));
    assert!(!cert.allows("marketing"));
    assert!(p.flags().contains("qualified_certificate"));
    assert!(p.events().contains("agreement_end"));
    assert!(p.category("codeguard").unwrap().follows_erasure_request());
    assert!(p.purpose("sale").unwrap().sale);
    let usage = &p.category("usage_log").unwrap().retention[0];
    assert_eq!(
        usage.kind,
        RuleKind::After(Clause {
            event: Event::Collected,
            keep: CalendarSpan {
                amount: 13,
                unit: SpanUnit::Months
            }
        })
    );
    assert_eq!(
        cert.retention[1].describe(),
        "7y after last_certificate_end"
    );
}

fn error_of(src: &str) -> String {
    let e = Policy::parse(src, "bad.toml").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Policy);
    e.message().to_string()
}

#[test]
fn errors_name_file_line_and_key() {
    let base = "[purposes.p]\n[categories.c]\nlegal_basis = \"contract\"\npurposes = [\"p\"]\n";
    let m = error_of(&format!("{base}colour = 1\n"));
    assert!(m.starts_with("bad.toml:5"), "{m}");
    assert!(m.contains("colour"), "{m}");
    let m = error_of(
        "[purposes.p]\n[categories.c]\nlegal_basis = \"contract\"\npurposes = [\"p\", \"nope\"]\n",
    );
    assert!(
        m.starts_with("bad.toml:4: categories.c.purposes: unknown purpose \"nope\""),
        "{m}"
    );
    let m = error_of("[purposes.p]\n[categories.c]\nlegal_basis = \"whim\"\npurposes = [\"p\"]\n");
    assert!(m.starts_with("bad.toml:3"), "{m}");
    let m = error_of(&format!(
        "{base}retention = [{{ after = \"x\", keep = \"7 years\" }}]\n"
    ));
    assert!(
        m.starts_with("bad.toml:5: categories.c.retention[0].keep: bad span"),
        "{m}"
    );
    let m = error_of(&format!("{base}retention = [{{ keep = \"7y\" }}]\n"));
    assert!(m.contains("names no event"), "{m}");
    let m = error_of(&format!("{base}retention = [{{ before = \"x\" }}]\n"));
    assert!(m.contains("before"), "{m}");
    let m = error_of(&format!("{base}retention = [{{ until = \"bored\" }}]\n"));
    assert!(m.contains("consent_withdrawn"), "{m}");
    let m = error_of(&format!(
        "{base}retention = [{{ until = \"consent_withdrawn\" }}]\n"
    ));
    assert!(m.contains("legal_basis = \"consent\""), "{m}");
    let m = error_of(&format!(
        "{base}retention = [{{ earliest = [{{ after = \"a\" }}] }}]\n"
    ));
    assert!(m.contains("at least two"), "{m}");
    let m = error_of(&format!(
        "{base}retention = [{{ after = \"a\" }}, {{ after = \"b\" }}]\n"
    ));
    assert!(m.contains("unreachable"), "{m}");
    let m = error_of("[purposes.p]\n");
    assert!(m.contains("at least one category"), "{m}");
    let m = error_of("this is not toml");
    assert!(m.starts_with("bad.toml:1"), "{m}");
    let m = error_of(
        "[purposes.Bad-Name]\n[categories.c]\nlegal_basis = \"contract\"\npurposes = [\"p\"]\n",
    );
    assert!(m.contains("not a valid name"), "{m}");
}

#[test]
fn spans() {
    assert_eq!(CalendarSpan::parse("0d").unwrap(), CalendarSpan::ZERO);
    assert_eq!(CalendarSpan::parse("13mo").unwrap().unit, SpanUnit::Months);
    for bad in [
        "",
        "7",
        "y",
        "-1y",
        "1.5y",
        "7Y",
        "1001y",
        "99999999999d",
        "7 y",
    ] {
        assert!(CalendarSpan::parse(bad).is_err(), "{bad}");
    }
}
