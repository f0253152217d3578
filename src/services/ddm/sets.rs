//! A device's declaration set: Lanyard's own declarations, the management properties from the
//! register, the union of its groups' declarations, and its groups' OS updates.
//!
//! [`compose`] is the rule, without storage: the union over the device's groups, where two
//! groups that give the same identifier different content, or two declarations of a type Apple
//! applies only once per device (`apply: single`), are a [`Conflict`]: reported, and withheld
//! from the device, never resolved silently in favour of one group. Each group's configurations
//! that none of its own activations names are activated by a simple activation of Lanyard's,
//! `lanyard.group.<id>`. OS updates come only when the legal hold allows them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Ddm, SUBSCRIBED};
use crate::error::Result;
use crate::protocol::ddm::{Declaration, Kind};
use crate::protocol::declaration_schema;
use crate::store::{GroupDeclarationRecord, HolderRow, OsUpdateRecord};

/// Identifiers that start with this are Lanyard's own.
pub const RESERVED_PREFIX: &str = "lanyard.";
/// Apple's OS update enforcement declaration.
pub const ENFORCEMENT_TYPE: &str = "com.apple.configuration.softwareupdate.enforcement.specific";

/// Two groups disagree about one declaration: the device gets neither until they agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Conflict {
    pub identifier: String,
    #[serde(rename = "type")]
    pub declaration_type: String,
    /// The groups that give it.
    pub groups: Vec<Uuid>,
    /// In words.
    pub reason: String,
}

/// What a device should have, and what was withheld.
#[derive(Debug, Clone, Default)]
pub struct DeviceSet {
    pub declarations: Vec<Declaration>,
    pub conflicts: Vec<Conflict>,
    /// OS updates this device is not given because it is on legal hold.
    pub withheld_updates: Vec<Uuid>,
}

/// What one device's set is made from.
#[derive(Debug, Clone, Default)]
pub struct SetInputs<'a> {
    pub organization: &'a str,
    pub holder: Option<&'a HolderRow>,
    pub group_declarations: Vec<&'a GroupDeclarationRecord>,
    pub os_updates: Vec<&'a OsUpdateRecord>,
    /// On legal hold: no OS update (an update changes the evidence).
    pub on_hold: bool,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The management properties activations can test (`@property(year_group)`): the holder's
/// year group, key stage and whether the device is a pupil's, a member of staff's, or shared.
pub fn properties(holder: Option<&HolderRow>) -> Map<String, Value> {
    let mut m = Map::new();
    let ownership = match holder.map(|h| h.kind.as_str()) {
        None => "shared",
        Some("pupil") => "pupil",
        Some(_) => "staff",
    };
    m.insert("ownership".into(), json!(ownership));
    if let Some(h) = holder {
        if let Some(y) = &h.year_group {
            m.insert("year_group".into(), json!(y));
        }
        if let Some(k) = &h.key_stage {
            m.insert("key_stage".into(), json!(k));
        }
    }
    m
}

/// The enforcement declaration for an OS update.
pub fn enforcement(u: &OsUpdateRecord) -> Declaration {
    let mut payload = Map::new();
    payload.insert("TargetOSVersion".into(), json!(u.target_os_version));
    if let Some(b) = &u.target_build_version {
        payload.insert("TargetBuildVersion".into(), json!(b));
    }
    payload.insert("TargetLocalDateTime".into(), json!(u.deadline));
    if let Some(url) = &u.details_url {
        payload.insert("DetailsURL".into(), json!(url));
    }
    Declaration::new(ENFORCEMENT_TYPE, &format!("{RESERVED_PREFIX}os-update.{}", u.id), payload)
}

/// The identifiers an activation's payload names.
fn activated(payload: &Map<String, Value>) -> impl Iterator<Item = &str> {
    payload.get("StandardConfigurations").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// The device's set from its inputs.
pub fn compose(inputs: &SetInputs<'_>) -> DeviceSet {
    let subscriptions: Vec<Value> = SUBSCRIBED.iter().map(|name| json!({"Name": name})).collect();
    let mut out = DeviceSet {
        declarations: vec![
            Declaration::new("com.apple.management.organization-info", "lanyard.organization", obj(json!({"Name": inputs.organization}))),
            Declaration::new(
                "com.apple.management.server-capabilities",
                "lanyard.server-capabilities",
                obj(json!({"Version": "1.0", "SupportedFeatures": {}})),
            ),
            Declaration::new("com.apple.management.properties", "lanyard.properties", properties(inputs.holder)),
            Declaration::new(
                "com.apple.configuration.management.status-subscriptions",
                "lanyard.status-subscriptions",
                obj(json!({"StatusItems": subscriptions})),
            ),
            Declaration::new(
                "com.apple.activation.simple",
                "lanyard.activation",
                obj(json!({"StandardConfigurations": ["lanyard.status-subscriptions"]})),
            ),
        ],
        ..Default::default()
    };

    // The union, by identifier; different content under one identifier is a conflict.
    let mut by_id: BTreeMap<&str, Vec<&GroupDeclarationRecord>> = BTreeMap::new();
    for d in &inputs.group_declarations {
        by_id.entry(d.identifier.as_str()).or_default().push(d);
    }
    let mut withheld: BTreeSet<String> = BTreeSet::new();
    for (id, recs) in &by_id {
        let tokens: BTreeSet<&str> = recs.iter().map(|r| r.server_token.as_str()).collect();
        if tokens.len() > 1 {
            let groups: BTreeSet<Uuid> = recs.iter().map(|r| r.group_id).collect();
            out.conflicts.push(Conflict {
                identifier: (*id).to_owned(),
                declaration_type: recs[0].declaration_type.clone(),
                groups: groups.into_iter().collect(),
                reason: format!("{} groups give {id:?} different content; the device gets neither until they agree", tokens.len()),
            });
            withheld.insert((*id).to_owned());
        }
    }
    // A type Apple applies once per device, given twice.
    let mut single: BTreeMap<&str, Vec<&GroupDeclarationRecord>> = BTreeMap::new();
    for (id, recs) in &by_id {
        let t = recs[0].declaration_type.as_str();
        if !withheld.contains(*id) && declaration_schema::declaration_type(t).is_some_and(|s| s.apply == "single") {
            single.entry(t).or_default().push(recs[0]);
        }
    }
    for (t, recs) in single.into_iter().filter(|(_, r)| r.len() > 1) {
        let groups: BTreeSet<Uuid> = recs.iter().map(|r| r.group_id).collect();
        for r in &recs {
            withheld.insert(r.identifier.clone());
            out.conflicts.push(Conflict {
                identifier: r.identifier.clone(),
                declaration_type: t.to_owned(),
                groups: groups.iter().copied().collect(),
                reason: format!("Apple applies one {t} per device and this device's groups give {}", recs.len()),
            });
        }
    }

    // Each group's configurations, activated by its own activations or else by Lanyard's.
    let mut per_group: BTreeMap<Uuid, (Vec<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for d in &inputs.group_declarations {
        let entry = per_group.entry(d.group_id).or_default();
        match Kind::of(&d.declaration_type) {
            Some(Kind::Configuration) => entry.0.push(&d.identifier),
            Some(Kind::Activation) => {
                if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(&d.payload) {
                    let names: Vec<String> = activated(&p).map(str::to_owned).collect();
                    for n in names {
                        if let Some(found) = inputs.group_declarations.iter().find(|x| x.group_id == d.group_id && x.identifier == n) {
                            entry.1.insert(&found.identifier);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut served: BTreeSet<&str> = BTreeSet::new();
    for (id, recs) in &by_id {
        if withheld.contains(*id) || !served.insert(id) {
            continue;
        }
        let r = recs[0];
        let mut payload = match serde_json::from_str::<Value>(&r.payload) {
            Ok(Value::Object(p)) => p,
            _ => continue,
        };
        if Kind::of(&r.declaration_type) == Some(Kind::Activation) {
            if let Some(Value::Array(list)) = payload.get_mut("StandardConfigurations") {
                list.retain(|v| v.as_str().is_none_or(|s| !withheld.contains(s)));
            }
        }
        out.declarations.push(Declaration::new(&r.declaration_type, id, payload));
    }
    for (group, (configs, activated_by_group)) in &per_group {
        let mut rest: Vec<&str> = configs.iter().copied().filter(|c| !activated_by_group.contains(c) && !withheld.contains(*c)).collect();
        rest.sort();
        rest.dedup();
        if !rest.is_empty() {
            out.declarations.push(Declaration::new(
                "com.apple.activation.simple",
                &format!("{RESERVED_PREFIX}group.{group}"),
                obj(json!({"StandardConfigurations": rest})),
            ));
        }
    }

    // OS updates, unless the legal hold stops them.
    if inputs.on_hold {
        out.withheld_updates = inputs.os_updates.iter().map(|u| u.id).collect();
    } else if !inputs.os_updates.is_empty() {
        let updates: Vec<Declaration> = inputs.os_updates.iter().map(|u| enforcement(u)).collect();
        let ids: Vec<&str> = updates.iter().map(|d| d.identifier.as_str()).collect();
        let activation = Declaration::new("com.apple.activation.simple", "lanyard.os-updates", obj(json!({"StandardConfigurations": ids})));
        out.declarations.extend(updates);
        out.declarations.push(activation);
    }
    out
}

impl Ddm {
    /// The sets of these devices, read with a handful of queries whatever their number.
    pub async fn device_sets(&self, udids: &[String]) -> Result<HashMap<String, DeviceSet>> {
        let now = self.clock.now();
        let memberships = self.store.groups_of_devices(udids).await?;
        let mut groups: Vec<Uuid> = memberships.iter().map(|(_, g)| *g).collect();
        groups.sort();
        groups.dedup();
        let declarations = self.store.declarations_of_groups(&groups).await?;
        let updates = self.store.os_updates_of_groups(&groups).await?;
        let holders = self.store.holders_of(udids, now).await?;
        let held = self.hold.withholds_os_updates(udids).await?;
        let mut by_device: HashMap<&str, Vec<Uuid>> = HashMap::new();
        for (u, g) in &memberships {
            by_device.entry(u.as_str()).or_default().push(*g);
        }
        let mut out = HashMap::with_capacity(udids.len());
        for udid in udids {
            let groups = by_device.get(udid.as_str()).map(Vec::as_slice).unwrap_or_default();
            let inputs = SetInputs {
                organization: &self.organization,
                // The latest assignment is the holder (rows come oldest first).
                holder: holders.iter().rev().find(|h| h.udid == *udid),
                group_declarations: declarations.iter().filter(|d| groups.contains(&d.group_id)).collect(),
                os_updates: updates.iter().filter(|u| groups.contains(&u.group_id)).collect(),
                on_hold: held.contains(udid),
            };
            out.insert(udid.clone(), compose(&inputs));
        }
        Ok(out)
    }

    /// One device's set.
    pub async fn device_set(&self, udid: &str) -> Result<DeviceSet> {
        let udids = [udid.to_owned()];
        Ok(self.device_sets(&udids).await?.remove(udid).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn rec(group: Uuid, t: &str, id: &str, payload: Value) -> GroupDeclarationRecord {
        let d = Declaration::new(t, id, obj(payload.clone()));
        GroupDeclarationRecord {
            group_id: group,
            identifier: id.into(),
            declaration_type: t.into(),
            payload: payload.to_string(),
            server_token: d.server_token,
            updated_by: "operator:tech".into(),
            updated_at: Utc::now(),
        }
    }

    const PASSCODE: &str = "com.apple.configuration.passcode.settings";

    #[test]
    fn the_union_activates_each_groups_configurations() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let recs = [
            rec(a, PASSCODE, "ks2.passcode", json!({"MinimumLength": 4})),
            rec(b, PASSCODE, "staff.passcode", json!({"MinimumLength": 8})),
        ];
        let set = compose(&SetInputs { organization: "St Mary's", group_declarations: recs.iter().collect(), ..Default::default() });
        assert!(set.conflicts.is_empty());
        let ids: Vec<&str> = set.declarations.iter().map(|d| d.identifier.as_str()).collect();
        assert!(ids.contains(&"ks2.passcode") && ids.contains(&"staff.passcode"), "{ids:?}");
        let act = set.declarations.iter().find(|d| d.identifier == format!("lanyard.group.{a}")).expect("group activation");
        assert_eq!(act.payload["StandardConfigurations"], json!(["ks2.passcode"]));
    }

    #[test]
    fn different_content_under_one_identifier_is_a_conflict_and_withheld() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let recs = [rec(a, PASSCODE, "passcode", json!({"MinimumLength": 4})), rec(b, PASSCODE, "passcode", json!({"MinimumLength": 8}))];
        let set = compose(&SetInputs { organization: "x", group_declarations: recs.iter().collect(), ..Default::default() });
        assert_eq!(set.conflicts.len(), 1);
        assert_eq!(set.conflicts[0].identifier, "passcode");
        let mut groups = vec![a, b];
        groups.sort();
        assert_eq!(set.conflicts[0].groups, groups);
        assert!(!set.declarations.iter().any(|d| d.identifier == "passcode"));
        assert!(!set.declarations.iter().any(|d| d.identifier.starts_with("lanyard.group.")), "nothing left to activate");
        // The same content from two groups is one declaration, no conflict.
        let same = [rec(a, PASSCODE, "passcode", json!({"MinimumLength": 6})), rec(b, PASSCODE, "passcode", json!({"MinimumLength": 6}))];
        let set = compose(&SetInputs { organization: "x", group_declarations: same.iter().collect(), ..Default::default() });
        assert!(set.conflicts.is_empty());
        assert_eq!(set.declarations.iter().filter(|d| d.identifier == "passcode").count(), 1);
    }

    #[test]
    fn os_updates_are_withheld_on_legal_hold() {
        let u = OsUpdateRecord {
            id: Uuid::new_v4(),
            group_id: Uuid::new_v4(),
            target_os_version: "18.2".into(),
            target_build_version: None,
            deadline: "2026-12-09T16:00:00".into(),
            details_url: None,
            created_by: "operator:tech".into(),
            created_at: Utc::now(),
            cancelled_by: None,
            cancelled_at: None,
        };
        let free = compose(&SetInputs { organization: "x", os_updates: vec![&u], ..Default::default() });
        let decl = free.declarations.iter().find(|d| d.declaration_type == ENFORCEMENT_TYPE).expect("enforcement");
        assert_eq!(decl.payload["TargetLocalDateTime"], "2026-12-09T16:00:00");
        assert!(declaration_schema::check(ENFORCEMENT_TYPE, &Value::Object(decl.payload.clone())).is_empty());
        let held = compose(&SetInputs { organization: "x", os_updates: vec![&u], on_hold: true, ..Default::default() });
        assert!(!held.declarations.iter().any(|d| d.declaration_type == ENFORCEMENT_TYPE));
        assert_eq!(held.withheld_updates, [u.id]);
    }

    #[test]
    fn properties_follow_the_holder() {
        let pupil = HolderRow { udid: "u".into(), kind: "pupil".into(), year_group: Some("Y5".into()), key_stage: Some("KS2".into()) };
        assert_eq!(Value::Object(properties(Some(&pupil))), json!({"ownership": "pupil", "year_group": "Y5", "key_stage": "KS2"}));
        assert_eq!(Value::Object(properties(None)), json!({"ownership": "shared"}));
    }
}
