//! The custody-report PDF is real Unicode text: pupils' names (Zoë, Siobhán, Łukasz, Ayşe,
//! Nguyễn), a summary in Welsh (ŵ, ŷ) and an em dash come back exactly from poppler's
//! `pdftotext`; a custody log too long for one page breaks across pages with its header row
//! repeated, and every page carries the case id and "Page N of M".
//!
//! Needs `pdftotext` (Debian's poppler-utils; .ci/run installs it): without it the test fails.

#[macro_use]
mod common;

use std::process::Command;

use common::{Backend, TestServer};
use lanyard_bench::sim::{Kind, SimDevice};
use reqwest::StatusCode;
use serde_json::json;

backend_tests!(custody_pdf_shows_unicode_exactly_and_numbers_every_page);

const NAMES: [&str; 5] = ["Zoë", "Siobhán", "Łukasz", "Ayşe", "Nguyễn"];
/// "Concern about online messages at home and by the water — raised by the class teacher".
const WELSH_SUMMARY: &str = "Pryder am negeseuon ar-lein yn y tŷ ac wrth y dŵr — codwyd gan yr athro";
const NOTES: usize = 70;

/// The text of `pdf` as poppler's `pdftotext` reads it with `mode` (pages end with a form feed).
fn pdftotext(pdf: &[u8], mode: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custody.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext").args([mode, "-enc", "UTF-8"]).arg(&path).arg("-").output().unwrap_or_else(|e| {
        panic!("cannot run pdftotext ({e}): the custody-PDF test needs poppler-utils (apt-get install poppler-utils; .ci/run installs it)")
    });
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("pdftotext writes UTF-8")
}

fn pages(text: &str) -> Vec<&str> {
    text.split('\u{c}').filter(|p| !p.trim().is_empty()).collect()
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Answer every queued command, so the case holds evidence.
async fn answer_all(s: &TestServer, d: &SimDevice) {
    let (_, mut next) = s.connect(d, d.idle()).await;
    while !next.is_empty() {
        let (_, _, report) = d.answer(&next).unwrap();
        next = s.connect(d, report).await.1;
    }
}

async fn custody_pdf_shows_unicode_exactly_and_numbers_every_page(b: Backend) {
    let s = TestServer::start(b).await;
    let dsl = s.operator("dsl.jones", "dsl").await;
    let (st, case) = s
        .post(
            "/api/v1/cases",
            &dsl,
            json!({
                "kind": "cyberbullying",
                "summary": WELSH_SUMMARY,
                "justification": "Zoë and Siobhán told Mr Łukasz Nowak — Ayşe and Nguyễn were named",
                "police_reference": "PC Nguyễn — 4411/25",
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{case}");
    let case_id = case["id"].as_str().unwrap().to_owned();

    // One quarantined iPad, for an evidence table with its hashes.
    let ipad = s.enrolled_device(Kind::SupervisedIpad).await;
    let (st, q) = s
        .post(
            &format!("/api/v1/cases/{case_id}/devices"),
            &dsl,
            json!({"udid": ipad.udid, "justification": "Ayşe's iPad — held until the police advise", "phone_number": "01234 567890"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{q}");
    answer_all(&s, &ipad).await;

    // Enough notes that the events table runs over several pages, and one long enough to wrap.
    for i in 0..NOTES {
        let text = format!("Note {i}: spoke with {} — tŷ, dŵr", NAMES[i % NAMES.len()]);
        let (st, e) = s
            .post(
                &format!("/api/v1/cases/{case_id}/actions"),
                &dsl,
                json!({"kind": "note", "text": text, "justification": "Siobhán's parents asked for a record"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{e}");
    }
    let long = "Nguyễn described the messages in detail — ".repeat(160);
    let (st, e) =
        s.post(&format!("/api/v1/cases/{case_id}/actions"), &dsl, json!({"kind": "note", "text": long, "justification": "Record"})).await;
    assert_eq!(st, StatusCode::CREATED, "{e}");

    let resp = s.client.get(s.url(&format!("/api/v1/cases/{case_id}/custody.pdf"))).bearer_auth(&dsl).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let pdf = resp.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    // As laid out on the page: what fits on one line of a cell is on one line of text.
    let text = pdftotext(&pdf, "-layout");
    for name in NAMES {
        assert!(text.contains(name), "{name} is not in the PDF's text:\n{text}");
    }
    assert!(text.contains(WELSH_SUMMARY), "the Welsh summary is not in the PDF's text:\n{text}");
    assert!(text.contains("PC Nguyễn — 4411/25"), "{text}");
    assert!(!text.contains('?') && !text.contains('\u{fffd}'), "a character was replaced:\n{text}");
    let (_, log) = s.get(&format!("/api/v1/cases/{case_id}/custody"), &dsl).await;
    let evidence = log["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 6, "{log}");
    for e in evidence {
        let sha = e["sha256"].as_str().unwrap();
        assert!(text.lines().any(|l| l.contains(sha)), "hash {sha} is not whole on one line:\n{text}");
    }

    // Every page: the case, the case id and "Page N of M"; the events table's header row on every
    // page after the first (the table starts on page 1 and runs to the end).
    let laid_out = pages(&text);
    let n = laid_out.len();
    assert!(n >= 3, "expected the custody log to need several pages, got {n}:\n{text}");
    let number = case["number"].as_i64().unwrap();
    let title = format!("Chain of custody — safeguarding case {number}");
    for (i, page) in laid_out.iter().enumerate() {
        assert!(page.contains(&title), "page {} lacks the case:\n{page}", i + 1);
        assert!(page.contains(&format!("Case id {case_id}")), "page {} lacks the case id:\n{page}", i + 1);
        assert!(page.contains(&format!("Page {} of {n}", i + 1)), "page {} lacks its number:\n{page}", i + 1);
        if i > 0 {
            assert!(page.contains("Justification and detail"), "page {} lacks the table's header row:\n{page}", i + 1);
        }
    }

    // In drawing order, without each page's header and repeated table header, wrapped text reads
    // whole: the justification, every note once and in order, and the long note across its pages.
    let raw = pdftotext(&pdf, "-raw");
    let raw_pages = pages(&raw);
    assert_eq!(raw_pages.len(), n);
    let org = &s.ctx.config.organization;
    let mut body = String::new();
    for (i, page) in raw_pages.iter().enumerate() {
        let page = words(page);
        let head = format!("{org} — {title} Case id {case_id} Page {} of {n}", i + 1);
        let rest = page.strip_prefix(&head).unwrap_or_else(|| panic!("page {} does not start with {head:?}:\n{page}", i + 1));
        let rest = rest.trim_start();
        body.push_str(rest.strip_prefix("# When (UTC) What Who Device Justification and detail").unwrap_or(rest));
        body.push(' ');
    }
    let body = words(&body);
    assert!(body.contains("Zoë and Siobhán told Mr Łukasz Nowak — Ayşe and Nguyễn were named"), "{body}");
    let mut at = 0;
    for i in 0..NOTES {
        let want = format!("\"text\":\"Note {i}: spoke with {} — tŷ, dŵr\"", NAMES[i % NAMES.len()]);
        let found = body[at..].find(&want).unwrap_or_else(|| panic!("{want} missing or out of order:\n{body}"));
        at += found + want.len();
    }
    assert!(body.contains(&format!("\"text\":\"{}\"", long.trim())), "the long note is not whole:\n{body}");
    s.stop().await;
}
