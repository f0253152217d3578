//! Expiry warnings for what Apple issues for a year at a time: the MDM push certificate and the
//! Apple School Manager server tokens. Each warns at 30, 14, 7 and 1 days before it expires: in
//! its status (the console's banner, `/readyz`), as a `/metrics` gauge, and once per threshold
//! in the audit log, so that the log shows who was told, and when, before anything stopped.

use serde_json::json;

use crate::error::Result;
use crate::services::audit::Audit;
use crate::services::auth::Actor;

/// The days before expiry at which Lanyard warns.
pub const WARN_AT_DAYS: [i64; 4] = [30, 14, 7, 1];

/// The warning threshold `days_left` has reached: the smallest of [`WARN_AT_DAYS`] not below
/// it, 0 once expired, None while more than 30 days are left.
pub fn threshold(days_left: i64) -> Option<i64> {
    if days_left < 0 {
        return Some(0);
    }
    WARN_AT_DAYS.iter().rev().copied().find(|t| days_left <= *t)
}

/// `ok`, `expiring` or `expired`, as the status fields say it.
pub fn status(days_left: i64, expired: bool) -> &'static str {
    if expired {
        "expired"
    } else if threshold(days_left).is_some() {
        "expiring"
    } else {
        "ok"
    }
}

impl Audit {
    /// Write `warning` to the audit log as `action` (`push_cert.expiry_warning`, ...) once for
    /// each threshold `days_left` reaches; `key` names the certificate or token (with its
    /// expiry, so a renewal warns afresh). True when an entry was written now.
    pub async fn expiry_warning(&self, action: &str, key: &str, target: &str, days_left: i64, warning: &str) -> Result<bool> {
        let Some(days) = threshold(days_left) else { return Ok(false) };
        let entry = self.audit_entry(
            &Actor::system(),
            action,
            Some(target),
            json!({"days_left": days_left, "threshold": days, "warning": warning}),
        );
        let new = self.store.append_audit_once(key, days, entry).await?;
        if new {
            tracing::warn!("{warning}");
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_30_14_7_1_and_expired() {
        assert_eq!(threshold(45), None);
        assert_eq!(threshold(31), None);
        assert_eq!(threshold(30), Some(30));
        assert_eq!(threshold(15), Some(30));
        assert_eq!(threshold(14), Some(14));
        assert_eq!(threshold(8), Some(14));
        assert_eq!(threshold(7), Some(7));
        assert_eq!(threshold(2), Some(7));
        assert_eq!(threshold(1), Some(1));
        assert_eq!(threshold(0), Some(1));
        assert_eq!(threshold(-1), Some(0));
        assert_eq!(status(40, false), "ok");
        assert_eq!(status(3, false), "expiring");
        assert_eq!(status(0, true), "expired");
    }
}
