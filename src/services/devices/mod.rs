//! Devices: how they prove who they are, what their check-ins and reports do, and the
//! inventory we keep about them.
//!
//! These are the rules behind the device face (`/mdm/checkin`, `/mdm/connect`). A failed
//! authentication is a 400 or 403, never a 401: a 401 makes a device unenrol itself.

pub mod activation_lock;
pub mod auth;
pub mod checkin;
pub mod connect;
pub mod inventory;
pub mod return_to_service;
pub mod setup;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::DynStore;
pub use auth::DeviceIdentity;
pub use inventory::Device;
use std::sync::Arc;

/// What devices say: authentication, check-in, connect, inventory.
#[derive(Clone)]
pub struct Devices {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) pki: Arc<crate::pki::Pki>,
    pub(crate) signers: Arc<crate::protocol::signers::SignerCache>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: crate::services::audit::Audit,
    pub(crate) hold: crate::services::hold::Hold,
    pub(crate) push: crate::services::push::Push,
    pub(crate) commands: crate::services::commands::Commands,
    pub(crate) profiles: crate::services::profiles::Profiles,
    pub(crate) safeguarding: crate::services::safeguarding::Safeguarding,
    pub(crate) enrollment: crate::services::enrollment::Enrollment,
    pub(crate) ddm: crate::services::ddm::Ddm,
    /// How long a device may wait in Setup Assistant for its profiles (`ade_setup_timeout`).
    pub(crate) setup_timeout: std::time::Duration,
}

/// `iOS`, `iPadOS` or `macOS`, from what the device says it is.
pub fn platform_of(product_name: Option<&str>, model_name: Option<&str>, model: Option<&str>) -> &'static str {
    let names = [product_name, model_name, model].into_iter().flatten().map(str::to_ascii_lowercase).collect::<Vec<_>>();
    if names.iter().any(|n| n.starts_with("ipad")) {
        "iPadOS"
    } else if names.iter().any(|n| n.starts_with("mac") || n.starts_with("imac") || n.contains("macbook") || n.starts_with("vmware")) {
        "macOS"
    } else {
        "iOS"
    }
}

/// What the faces read about devices, through this service rather than from the store.
impl Devices {
    pub async fn device(&self, udid: &str) -> crate::error::Result<Option<crate::store::DeviceRecord>> {
        Ok(self.store.device(udid).await?)
    }

    pub async fn list_devices(&self, f: &crate::store::DeviceFilter) -> crate::error::Result<Vec<crate::store::DeviceRecord>> {
        Ok(self.store.list_devices(f).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::platform_of;

    #[test]
    fn platforms() {
        assert_eq!(platform_of(Some("iPad2,5"), None, None), "iPadOS");
        assert_eq!(platform_of(Some("iPhone14,2"), None, None), "iOS");
        assert_eq!(platform_of(Some("MacBookPro18,3"), None, None), "macOS");
        assert_eq!(platform_of(Some("Mac14,2"), Some("MacBook Air"), None), "macOS");
        assert_eq!(platform_of(None, None, None), "iOS");
    }
}
