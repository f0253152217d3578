//! `/ui/profiles`: the profiles Lanyard knows about.
//!
//! For now this lists the school baseline that ships in `profiles/`, with what each one holds
//! and its web-filtering policy in words. Uploading, assigning to groups and the two-person
//! filtering-change flow arrive with the profiles API.

use askama::Template;
use axum::extract::State;

use super::{Nav, Session, UiResult, render};
use crate::auth::Permission;
use crate::context::Ctx;

struct ProfileRow {
    file: String,
    name: String,
    identifier: String,
    description: String,
    payloads: String,
    filtering: Vec<String>,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "profiles.html")]
struct ProfilesPage {
    nav: Nav,
    rows: Vec<ProfileRow>,
}

pub async fn page(State(_ctx): State<Ctx>, s: Session) -> UiResult {
    s.require(Permission::ReadProfiles)?;
    let rows = crate::profiles::BASELINE
        .iter()
        .map(|(stem, xml)| match crate::profiles::inspect(xml.as_bytes()) {
            Ok(p) => ProfileRow {
                file: format!("{stem}.mobileconfig"),
                name: p.display_name.clone().unwrap_or_else(|| stem.to_string()),
                identifier: p.identifier.clone(),
                description: p.description.clone().unwrap_or_default(),
                payloads: p.payload_types.join(", "),
                filtering: crate::profiles::diff(None, p.filtering.as_ref()).lines(),
                problem: None,
            },
            Err(e) => ProfileRow {
                file: format!("{stem}.mobileconfig"),
                name: stem.to_string(),
                identifier: String::new(),
                description: String::new(),
                payloads: String::new(),
                filtering: vec![],
                problem: Some(e.to_string()),
            },
        })
        .collect();
    Ok(render(&ProfilesPage { nav: Nav::new(&s, "profiles"), rows }))
}
