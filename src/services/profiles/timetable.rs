//! Lesson-time restrictions (policy 9.2: AirDrop "hidden or disabled during lesson times").
//!
//! The timetable is named periods per weekday and term dates, in the school's time zone. A
//! schedule applies a profile to a group only during lessons: inside a period, on a term day.
//! [`Profiles::timetable_tick`] (run by the sweeper every 30 seconds, and by tests with a fake
//! clock) notices when a window opens or closes and reconciles the group's devices, which
//! installs the profile at the start and removes it at the end. Removal is fail-closed: until a
//! device acknowledges the RemoveProfile the restriction counts as on, and
//! [`Profiles::schedule_drift`] lists every device whose state differs from the timetable's
//! intent, and since when.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::profiles::Profiles;
use crate::store::{ScheduleRecord, TimetableRecord};

/// The time zones a timetable may be in. Schools in England keep UK time; `UTC` is for tests
/// and for schools that want fixed times.
pub const TIMEZONES: &[&str] = &["Europe/London", "UTC"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Period {
    pub name: String,
    /// `monday` .. `sunday`.
    pub weekday: String,
    /// `HH:MM`, local time.
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Term {
    /// First day of term.
    pub start: NaiveDate,
    /// Last day of term (inclusive).
    pub end: NaiveDate,
}

/// The timetable as stored and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timetable {
    #[schema(schema_with = crate::schema::enums::timezone)]
    pub timezone: String,
    #[schema(inline)]
    pub periods: Vec<Period>,
    /// No terms: every week counts as term time.
    #[schema(inline)]
    pub terms: Vec<Term>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Whether lessons are on now (in the answer to GET/PUT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_lessons_now: Option<bool>,
}

/// A period, parsed.
#[derive(Debug, Clone, Copy)]
struct Slot {
    weekday: Weekday,
    start: NaiveTime,
    end: NaiveTime,
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

/// `monday`, `Mon`, or 1 (Monday) .. 7 (Sunday).
fn parse_weekday(v: &Value) -> Option<Weekday> {
    let all = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];
    if let Some(n) = v.as_u64() {
        return (1..=7).contains(&n).then(|| all[(n - 1) as usize]);
    }
    let s = v.as_str()?.trim().to_ascii_lowercase();
    all.into_iter().find(|d| weekday_name(*d) == s || (s.len() >= 3 && weekday_name(*d).starts_with(&s)))
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

/// The last Sunday of a month, for UK summer time.
fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let first_next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    let mut d = first_next.expect("valid date") - Duration::days(1);
    while d.weekday() != Weekday::Sun {
        d -= Duration::days(1);
    }
    d
}

/// UK summer time (BST, UTC+1): from 01:00 UTC on the last Sunday of March to 01:00 UTC on the
/// last Sunday of October.
fn is_bst(t: DateTime<Utc>) -> bool {
    let y = t.year();
    let start = Utc.from_utc_datetime(&last_sunday(y, 3).and_hms_opt(1, 0, 0).expect("valid time"));
    let end = Utc.from_utc_datetime(&last_sunday(y, 10).and_hms_opt(1, 0, 0).expect("valid time"));
    t >= start && t < end
}

/// A parsed, valid timetable.
#[derive(Debug, Clone)]
pub struct Calendar {
    timezone: String,
    slots: Vec<Slot>,
    terms: Vec<Term>,
}

impl Calendar {
    fn offset(&self, t: DateTime<Utc>) -> Duration {
        if self.timezone == "Europe/London" && is_bst(t) { Duration::hours(1) } else { Duration::zero() }
    }

    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc() + self.offset(t)
    }

    fn to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let as_utc = Utc.from_utc_datetime(&local);
        if self.timezone == "Europe/London" {
            let summer = as_utc - Duration::hours(1);
            if is_bst(summer) {
                return summer;
            }
        }
        as_utc
    }

    fn term_day(&self, d: NaiveDate) -> bool {
        self.terms.is_empty() || self.terms.iter().any(|t| t.start <= d && d <= t.end)
    }

    /// A calendar with no lessons, in UK time: what deadlines use before a timetable is set.
    pub fn no_lessons() -> Calendar {
        Calendar { timezone: "Europe/London".into(), slots: Vec::new(), terms: Vec::new() }
    }

    /// The school's local time at `t`.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        self.to_local(t)
    }

    /// Lessons are on at this local time.
    pub fn in_lessons_local(&self, local: NaiveDateTime) -> bool {
        self.in_lessons(self.to_utc(local))
    }

    /// When lessons end on `day` (the end of its last period), if it is a school day.
    pub fn lessons_end(&self, day: NaiveDate) -> Option<NaiveTime> {
        if !self.term_day(day) {
            return None;
        }
        self.slots.iter().filter(|s| s.weekday == day.weekday()).map(|s| s.end).max()
    }

    /// A deadline outside lessons: the end of lessons on the first school day after `day`
    /// (16:00 on the next weekday when there is no timetable), looking up to eight weeks on.
    pub fn after_lessons_next_school_day(&self, day: NaiveDate) -> NaiveDateTime {
        let four_pm = NaiveTime::from_hms_opt(16, 0, 0).expect("valid time");
        for ahead in 1..=56 {
            let d = day + Duration::days(ahead);
            if self.slots.is_empty() {
                if d.weekday().number_from_monday() <= 5 {
                    return d.and_time(four_pm);
                }
            } else if let Some(end) = self.lessons_end(d) {
                return d.and_time(end);
            }
        }
        (day + Duration::days(1)).and_time(four_pm)
    }

    /// Lessons are on at `t`: a term day, inside a period.
    pub fn in_lessons(&self, t: DateTime<Utc>) -> bool {
        let local = self.to_local(t);
        let (day, time) = (local.date(), local.time());
        self.term_day(day) && self.slots.iter().any(|s| s.weekday == day.weekday() && s.start <= time && time < s.end)
    }

    /// The latest moment at or before `t` when lessons started or stopped (looking back up to
    /// three weeks), if any.
    pub fn last_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = self.to_local(t).date();
        let mut best: Option<DateTime<Utc>> = None;
        for back in 0..=21 {
            let day = today - Duration::days(back);
            for s in self.slots.iter().filter(|s| s.weekday == day.weekday()) {
                for edge in [s.start, s.end] {
                    let at = self.to_utc(day.and_time(edge));
                    if at > t || best.is_some_and(|b| b >= at) {
                        continue;
                    }
                    if self.in_lessons(at) != self.in_lessons(at - Duration::seconds(1)) {
                        best = Some(at);
                    }
                }
            }
            if best.is_some() {
                break;
            }
        }
        best
    }
}

/// Validate a `PUT /api/v1/timetable` body; errors name the field (`periods[2].start`).
pub fn parse_timetable(body: &Value) -> Result<(String, Vec<Period>, Vec<Term>)> {
    let obj = body.as_object().ok_or_else(|| Error::unprocessable("body", "expected an object with periods and terms"))?;
    if let Some(k) = obj.keys().find(|k| !["periods", "terms", "timezone"].contains(&k.as_str())) {
        return Err(Error::unprocessable(k.clone(), "unknown field (expected periods, terms, timezone)"));
    }
    let timezone = match obj.get("timezone") {
        None | Some(Value::Null) => "Europe/London".to_owned(),
        Some(Value::String(tz)) => TIMEZONES
            .iter()
            .find(|z| z.eq_ignore_ascii_case(tz.trim()))
            .map(|z| (*z).to_owned())
            .ok_or_else(|| Error::unprocessable("timezone", format!("expected one of {}", TIMEZONES.join(", "))))?,
        Some(_) => return Err(Error::unprocessable("timezone", "must be a string")),
    };
    let periods_in = match obj.get("periods") {
        Some(Value::Array(a)) => a.as_slice(),
        None => return Err(Error::unprocessable("periods", "required: the lesson periods")),
        Some(_) => return Err(Error::unprocessable("periods", "must be an array")),
    };
    let mut periods = Vec::with_capacity(periods_in.len());
    for (i, p) in periods_in.iter().enumerate() {
        let at = |f: &str| format!("periods[{i}].{f}");
        let p = p.as_object().ok_or_else(|| Error::unprocessable(format!("periods[{i}]"), "must be an object"))?;
        if let Some(k) = p.keys().find(|k| !["name", "weekday", "start", "end"].contains(&k.as_str())) {
            return Err(Error::unprocessable(at(k), "unknown field (expected name, weekday, start, end)"));
        }
        let name = p.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty() && n.len() <= 100);
        let name = name.ok_or_else(|| Error::unprocessable(at("name"), "required: e.g. \"Period 1\""))?;
        let weekday = p
            .get("weekday")
            .and_then(parse_weekday)
            .ok_or_else(|| Error::unprocessable(at("weekday"), "expected monday..sunday (or 1 for Monday .. 7 for Sunday)"))?;
        let time = |f: &str| {
            p.get(f).and_then(Value::as_str).and_then(parse_time).ok_or_else(|| Error::unprocessable(at(f), "expected HH:MM (24-hour)"))
        };
        let (start, end) = (time("start")?, time("end")?);
        if end <= start {
            return Err(Error::unprocessable(at("end"), "must be after start"));
        }
        periods.push(Period {
            name: name.to_owned(),
            weekday: weekday_name(weekday).to_owned(),
            start: start.format("%H:%M").to_string(),
            end: end.format("%H:%M").to_string(),
        });
    }
    let terms_in = match obj.get("terms") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(Error::unprocessable("terms", "must be an array")),
    };
    let mut terms = Vec::with_capacity(terms_in.len());
    for (i, t) in terms_in.iter().enumerate() {
        let date = |f: &str| {
            t.get(f)
                .and_then(Value::as_str)
                .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
                .ok_or_else(|| Error::unprocessable(format!("terms[{i}].{f}"), "expected YYYY-MM-DD"))
        };
        let (start, end) = (date("start")?, date("end")?);
        if end < start {
            return Err(Error::unprocessable(format!("terms[{i}].end"), "must not be before start"));
        }
        terms.push(Term { start, end });
    }
    Ok((timezone, periods, terms))
}

pub(crate) fn calendar_of(t: &TimetableRecord) -> Calendar {
    let periods: Vec<Period> = serde_json::from_str(&t.periods).unwrap_or_default();
    let terms: Vec<Term> = serde_json::from_str(&t.terms).unwrap_or_default();
    let slots = periods
        .iter()
        .filter_map(|p| Some(Slot { weekday: parse_weekday(&json!(p.weekday))?, start: parse_time(&p.start)?, end: parse_time(&p.end)? }))
        .collect();
    Calendar { timezone: t.timezone.clone(), slots, terms }
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: Uuid,
    pub profile_id: Uuid,
    pub group_id: Uuid,
    #[schema(schema_with = crate::schema::enums::schedule_when)]
    pub when: String,
    /// Whether the timetable tick has it applied now.
    pub active: bool,
    pub changed_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<ScheduleRecord> for Schedule {
    fn from(s: ScheduleRecord) -> Self {
        Schedule {
            id: s.id,
            profile_id: s.profile_id,
            group_id: s.group_id,
            when: s.when_kind,
            active: s.active,
            changed_at: s.changed_at,
            created_by: s.created_by,
            created_at: s.created_at,
        }
    }
}

/// A device whose profile state differs from what the timetable wants now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriftItem {
    pub schedule_id: Uuid,
    pub profile_id: Uuid,
    pub profile_name: String,
    pub group_id: Uuid,
    pub group_name: String,
    pub udid: String,
    pub device_name: Option<String>,
    /// What the timetable wants: `installed` (lessons on) or `removed`.
    #[schema(schema_with = crate::schema::enums::drift_intended)]
    pub intended: String,
    /// What Lanyard knows the device has: `installed` or `not_installed`.
    #[schema(schema_with = crate::schema::enums::drift_actual)]
    pub actual: String,
    /// A command on its way: `install` or `remove`.
    #[schema(schema_with = crate::schema::enums::drift_pending)]
    pub pending: Option<String>,
    /// The device's latest refusal, if it refused.
    pub last_error: Option<String>,
    /// On legal hold: Lanyard removes nothing from it until the case is closed.
    pub on_legal_hold: bool,
    /// Since when the device has differed (the timetable's last change, or when the schedule
    /// was made), and for how long.
    pub since: DateTime<Utc>,
    pub drift_seconds: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Drift {
    pub now: DateTime<Utc>,
    pub in_lessons: bool,
    #[schema(inline)]
    pub items: Vec<DriftItem>,
}

/// What a timetable tick did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    /// Schedules whose window opened or closed on this tick.
    pub changed: usize,
    pub in_lessons: bool,
    pub installs: usize,
    pub removals: usize,
    /// Devices differing from the timetable when the tick looked (before its own commands).
    pub drifting: usize,
}

impl Profiles {
    pub async fn timetable_view(&self) -> Result<Timetable> {
        let now = self.clock.now();
        Ok(match self.store.timetable().await? {
            Some(t) => {
                let cal = calendar_of(&t);
                Timetable {
                    timezone: t.timezone.clone(),
                    periods: serde_json::from_str(&t.periods).unwrap_or_default(),
                    terms: serde_json::from_str(&t.terms).unwrap_or_default(),
                    updated_by: Some(t.updated_by),
                    updated_at: Some(t.updated_at),
                    in_lessons_now: Some(cal.in_lessons(now)),
                }
            }
            None => Timetable {
                timezone: "Europe/London".into(),
                periods: vec![],
                terms: vec![],
                updated_by: None,
                updated_at: None,
                in_lessons_now: Some(false),
            },
        })
    }

    /// Replace the timetable; the next tick applies it (this call runs one at once).
    pub async fn put_timetable(&self, actor: &Actor, body: &Value) -> Result<Timetable> {
        let (timezone, periods, terms) = parse_timetable(body)?;
        let rec = TimetableRecord {
            timezone,
            periods: serde_json::to_string(&periods).map_err(Error::internal)?,
            terms: serde_json::to_string(&terms).map_err(Error::internal)?,
            updated_by: actor.name.clone(),
            updated_at: self.clock.now(),
        };
        let audit = self.audit.audit_entry(
            actor,
            "timetable.update",
            None,
            json!({"timezone": rec.timezone, "periods": periods.len(), "terms": terms}),
        );
        self.store.put_timetable(&rec, audit).await?;
        self.timetable_tick().await?;
        self.timetable_view().await
    }

    async fn calendar(&self) -> Result<Option<Calendar>> {
        Ok(self.store.timetable().await?.as_ref().map(calendar_of))
    }

    pub async fn create_schedule(&self, actor: &Actor, profile_id: Uuid, group_id: Uuid, when: &str) -> Result<Schedule> {
        if when != "lessons" {
            return Err(Error::unprocessable("when", "expected \"lessons\""));
        }
        let p = self.live_profile(profile_id).await.map_err(|_| Error::unprocessable("profile_id", format!("no profile {profile_id}")))?;
        let g = self.live_group(group_id).await.map_err(|_| Error::unprocessable("group_id", format!("no group {group_id}")))?;
        if self.current_version(&p).await?.filtering.is_some() {
            return Err(Error::unprocessable(
                "profile_id",
                "a filtering profile cannot be switched on and off by the timetable: assign it to a group (a filtering change)",
            ));
        }
        let existing = self.store.list_schedules().await?;
        if existing.iter().any(|s| s.profile_id == p.id && s.group_id == g.id) {
            return Err(Error::conflict("schedule_exists", format!("{:?} is already scheduled for group {:?}", p.name, g.name)));
        }
        let now = self.clock.now();
        let rec = ScheduleRecord {
            id: Uuid::new_v4(),
            profile_id: p.id,
            group_id: g.id,
            when_kind: when.to_owned(),
            active: false,
            changed_at: now,
            created_by: actor.name.clone(),
            created_at: now,
            deleted_at: None,
            deleted_by: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "schedule.create",
            Some(&rec.id.to_string()),
            json!({"profile": p.name, "group": g.name, "when": when}),
        );
        self.store.create_schedule(&rec, audit).await?;
        self.timetable_tick().await?;
        Ok(self.store.schedule(rec.id).await?.map(Schedule::from).unwrap_or_else(|| rec.into()))
    }

    pub async fn list_schedule_views(&self) -> Result<Vec<Schedule>> {
        Ok(self.store.list_schedules().await?.into_iter().map(Schedule::from).collect())
    }

    /// Delete a schedule; reconcile removes its profile from the group's devices (except those
    /// on legal hold) if it was on.
    pub async fn delete_schedule(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let s = self
            .store
            .schedule(id)
            .await?
            .filter(|s| s.deleted_at.is_none())
            .ok_or_else(|| Error::not_found(format!("no schedule {id}")))?;
        let audit = self.audit.audit_entry(
            actor,
            "schedule.delete",
            Some(&id.to_string()),
            json!({"profile_id": s.profile_id, "group_id": s.group_id}),
        );
        if !self.store.delete_schedule(id, &actor.name, self.clock.now(), audit).await? {
            // Deleted by another request meanwhile (which recorded it).
            return Err(Error::not_found(format!("no schedule {id}")));
        }
        let members = self.store.group_members(s.group_id).await?;
        self.reconcile_and_wake(&members).await
    }

    /// One tick of the timetable: open or close each schedule's window as the timetable says
    /// now, reconcile the devices of those that changed, and retry devices still drifting
    /// (reconcile's back-off keeps a refusing device from being asked every tick).
    pub async fn timetable_tick(&self) -> Result<TickReport> {
        let now = self.clock.now();
        let cal = self.calendar().await?;
        let in_lessons = cal.as_ref().is_some_and(|c| c.in_lessons(now));
        let mut report = TickReport { in_lessons, ..Default::default() };
        let mut due: Vec<String> = Vec::new();
        for s in self.store.list_schedules().await? {
            // Only the instance that flips the window reconciles for it.
            if s.active != in_lessons && self.store.set_schedule_active(s.id, in_lessons, now).await? {
                report.changed += 1;
                tracing::info!(schedule = %s.id, profile = %s.profile_id, group = %s.group_id, on = in_lessons, "lesson-time window {}", if in_lessons { "opened" } else { "closed" });
                due.extend(self.store.group_members(s.group_id).await?);
            }
        }
        let drift = self.schedule_drift().await?;
        report.drifting = drift.items.len();
        due.extend(drift.items.iter().filter(|d| d.pending.is_none()).map(|d| d.udid.clone()));
        due.sort();
        due.dedup();
        if !due.is_empty() {
            let r = self.reconcile_devices(&due).await?;
            report.installs = r.installs;
            report.removals = r.removals;
            self.wake(r.woken);
        }
        Ok(report)
    }

    /// `GET /api/v1/schedules/drift`: devices whose state differs from the timetable's intent
    /// now, and for how long. A profile also assigned to one of the device's groups outside the
    /// timetable is meant to stay, so it is not drift.
    pub async fn schedule_drift(&self) -> Result<Drift> {
        let now = self.clock.now();
        let cal = self.calendar().await?;
        let in_lessons = cal.as_ref().is_some_and(|c| c.in_lessons(now));
        let last_change = cal.as_ref().and_then(|c| c.last_change(now));
        let updated_at = self.store.timetable().await?.map(|t| t.updated_at);
        let mut items = Vec::new();
        let mut names: BTreeMap<Uuid, String> = BTreeMap::new();
        for s in self.store.list_schedules().await? {
            let Some(p) = self.store.profile(s.profile_id).await? else { continue };
            let group_name = match names.get(&s.group_id) {
                Some(n) => n.clone(),
                None => {
                    let n = self.store.group(s.group_id).await?.map(|g| g.name).unwrap_or_default();
                    names.insert(s.group_id, n.clone());
                    n
                }
            };
            let since = [last_change, Some(s.created_at), updated_at].into_iter().flatten().max().unwrap_or(s.created_at);
            for udid in self.store.group_members(s.group_id).await? {
                let Some(device) = self.store.device(&udid).await?.filter(|d| d.enrolled) else { continue };
                let always: HashSet<Uuid> =
                    self.store.assigned_profiles_for_device(&udid).await?.into_iter().map(|(id, _, _)| id).collect();
                let want = in_lessons || always.contains(&p.id);
                let rows = self.store.device_profiles(&udid).await?;
                let has = rows.iter().any(|r| r.lanyard && (r.profile_id == Some(p.id) || r.identifier == p.identifier));
                if want == has {
                    continue;
                }
                let history = self.store.profile_command_states(&udid, now - Duration::days(30)).await?;
                let mine =
                    |c: &&crate::store::ProfileCommandState| c.command.profile_id == Some(p.id) || c.command.identifier == p.identifier;
                let pending = history.iter().rev().filter(mine).find(|c| c.is_pending(now)).map(|c| c.command.action.clone());
                let last_error = history
                    .iter()
                    .rev()
                    .filter(mine)
                    .find(|c| !c.is_pending(now))
                    .filter(|c| c.target_status == "error")
                    .and_then(|c| c.command.error.clone());
                items.push(DriftItem {
                    schedule_id: s.id,
                    profile_id: p.id,
                    profile_name: p.name.clone(),
                    group_id: s.group_id,
                    group_name: group_name.clone(),
                    udid: udid.clone(),
                    device_name: device.device_name.clone(),
                    intended: if want { "installed" } else { "removed" }.to_owned(),
                    actual: if has { "installed" } else { "not_installed" }.to_owned(),
                    pending,
                    last_error,
                    on_legal_hold: self.store.legal_hold(&udid).await?.is_some(),
                    since,
                    drift_seconds: (now - since).num_seconds().max(0),
                });
            }
        }
        Ok(Drift { now, in_lessons, items })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(tz: &str, periods: Value, terms: Value) -> Calendar {
        let (timezone, periods, terms) = parse_timetable(&json!({"timezone": tz, "periods": periods, "terms": terms})).unwrap();
        calendar_of(&TimetableRecord {
            timezone,
            periods: serde_json::to_string(&periods).unwrap(),
            terms: serde_json::to_string(&terms).unwrap(),
            updated_by: "t".into(),
            updated_at: Utc::now(),
        })
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lessons_follow_periods_terms_and_uk_time() {
        let c = cal(
            "Europe/London",
            json!([{"name": "P1", "weekday": "monday", "start": "09:00", "end": "10:00"},
                   {"name": "P2", "weekday": 1, "start": "10:00", "end": "11:00"}]),
            json!([{"start": "2026-01-05", "end": "2026-07-22"}]),
        );
        // Monday 2 March 2026 is winter time: 09:30 local is 09:30 UTC.
        assert!(c.in_lessons(utc("2026-03-02T09:30:00Z")));
        assert!(!c.in_lessons(utc("2026-03-02T08:59:59Z")));
        assert!(c.in_lessons(utc("2026-03-02T10:30:00Z")), "back-to-back periods");
        assert!(!c.in_lessons(utc("2026-03-02T11:00:00Z")));
        assert!(!c.in_lessons(utc("2026-03-03T09:30:00Z")), "Tuesday");
        // Monday 4 May 2026 is summer time: 09:00 local is 08:00 UTC.
        assert!(c.in_lessons(utc("2026-05-04T08:30:00Z")));
        assert!(!c.in_lessons(utc("2026-05-04T10:30:00Z")));
        // Outside term.
        assert!(!c.in_lessons(utc("2026-08-03T09:30:00Z")));
        // The last change: lessons started at 09:00 and run on through P2.
        assert_eq!(c.last_change(utc("2026-03-02T10:30:00Z")), Some(utc("2026-03-02T09:00:00Z")));
        assert_eq!(c.last_change(utc("2026-03-02T12:00:00Z")), Some(utc("2026-03-02T11:00:00Z")));
        assert_eq!(c.last_change(utc("2026-03-03T12:00:00Z")), Some(utc("2026-03-02T11:00:00Z")));
    }

    #[test]
    fn bst_switches_on_the_last_sundays() {
        assert!(!is_bst(utc("2026-03-29T00:59:59Z")));
        assert!(is_bst(utc("2026-03-29T01:00:00Z")));
        assert!(is_bst(utc("2026-10-25T00:59:59Z")));
        assert!(!is_bst(utc("2026-10-25T01:00:00Z")));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |body: Value, field: &str| {
            let e = parse_timetable(&body).unwrap_err();
            assert!(matches!(&e, Error::Unprocessable { field: f, .. } if f == field), "{e} (wanted {field})");
        };
        bad(json!({"periods": [{"name": "P1", "weekday": "funday", "start": "09:00", "end": "10:00"}]}), "periods[0].weekday");
        bad(json!({"periods": [{"name": "P1", "weekday": "mon", "start": "9am", "end": "10:00"}]}), "periods[0].start");
        bad(json!({"periods": [{"name": "P1", "weekday": "mon", "start": "10:00", "end": "09:00"}]}), "periods[0].end");
        bad(json!({"periods": [], "terms": [{"start": "2026-09-01", "end": "2026-08-01"}]}), "terms[0].end");
        bad(json!({"periods": [], "timezone": "Mars/Olympus"}), "timezone");
        bad(json!({"terms": []}), "periods");
        bad(json!({"periods": [], "holidays": []}), "holidays");
    }
}
