//! The console's declarations page (`/ui/declarations`): for each group, the Declarative Device
//! Management declarations its devices get, as the JSON `PUT /api/v1/groups/{id}/declarations`
//! takes, with conflicts between groups shown in words. Saving checks every declaration
//! against Apple's schema, exactly as the API does; an error names the declaration and key.
//! Reading takes `ReadProfiles`, saving `ManageProfiles`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use serde_json::{Value, json};

use super::session::{Form, Session};
use super::{Nav, Params, UiError, UiResult, render};
use crate::context::Ctx;
use crate::faces::api::extract::uuid_param;
use crate::services::auth::Permission;
use crate::services::ddm::groups::PutGroupDeclarations;

struct GroupCard {
    id: String,
    name: String,
    json: String,
    count: usize,
    conflicts: Vec<String>,
}

#[derive(Template)]
#[template(path = "declarations.html")]
struct DeclarationsPage {
    nav: Nav,
    done: Option<String>,
    groups: Vec<GroupCard>,
    can_manage: bool,
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ReadProfiles)?;
    let mut groups = Vec::new();
    let all = ctx.profiles.list_group_views().await?;
    for g in &all {
        let set = ctx.ddm.group_declarations(g.id).await?;
        let list: Vec<Value> = set
            .declarations
            .iter()
            .map(|d| json!({"type": d.declaration_type, "identifier": d.identifier, "payload": d.payload}))
            .collect();
        let name_of = |id: uuid::Uuid| all.iter().find(|x| x.id == id).map(|x| x.name.clone()).unwrap_or_else(|| id.to_string());
        let conflicts = set
            .conflicts
            .iter()
            .map(|c| {
                let names: Vec<String> = c.groups.iter().map(|id| name_of(*id)).collect();
                format!("{} ({}): {}; groups {}", c.identifier, c.declaration_type, c.reason, names.join(", "))
            })
            .collect();
        groups.push(GroupCard {
            id: g.id.to_string(),
            name: g.name.clone(),
            json: serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into()),
            count: list.len(),
            conflicts,
        });
    }
    let done = p.get("done").map(|n| format!("Saved. {n} of the group's devices were told of the change."));
    Ok(render(&DeclarationsPage { nav: Nav::new(&s, "declarations"), done, groups, can_manage: s.can(Permission::ManageProfiles) }))
}

/// `POST /ui/declarations/{gid}`: the group's declarations from the text area (a JSON array).
pub async fn save(State(ctx): State<Ctx>, Path(gid): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let text = form.get("declarations").unwrap_or("[]");
    let declarations = serde_json::from_str(text)
        .map_err(|e| UiError::field("Declarations", &format!("this is not a JSON list of {{type, identifier, payload}} ({e})")))?;
    let done = ctx.ddm.put_group_declarations(&s.actor(), uuid_param(&gid, "group")?, PutGroupDeclarations { declarations }).await?;
    let told = done.resync.map(|r| r.retokened).unwrap_or(0);
    Ok(Redirect::to(&format!("/ui/declarations?done={told}")).into_response())
}
