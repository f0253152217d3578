//! The SQL that writes a device's inventory, shared by the devices' own writes and by the
//! recording of a DeviceInformation answer (`store::commands`), on both backends.

/// Device `$1`'s inventory: `$2`... in the order of [`InventoryUpdate`](crate::store::InventoryUpdate)'s fields; NULL keeps
/// what is there.
pub(crate) const UPDATE_INVENTORY: &str = "UPDATE devices SET serial_number = COALESCE($2, serial_number), model = COALESCE($3, model), \
     model_name = COALESCE($4, model_name), product_name = COALESCE($5, product_name), device_name = COALESCE($6, device_name), \
     os_version = COALESCE($7, os_version), build_version = COALESCE($8, build_version), platform = COALESCE($9, platform), \
     imei = COALESCE($10, imei), meid = COALESCE($11, meid), wifi_mac = COALESCE($12, wifi_mac), \
     bluetooth_mac = COALESCE($13, bluetooth_mac), supervised = COALESCE($14, supervised), encrypted = COALESCE($15, encrypted), \
     passcode_present = COALESCE($16, passcode_present), passcode_compliant = COALESCE($17, passcode_compliant), \
     filevault_enabled = COALESCE($18, filevault_enabled), storage_capacity_gb = COALESCE($19, storage_capacity_gb), \
     storage_available_gb = COALESCE($20, storage_available_gb), battery_level = COALESCE($21, battery_level), \
     info_updated_at = COALESCE($22, info_updated_at), security_updated_at = COALESCE($23, security_updated_at) \
     WHERE udid = $1";

/// Binds an [`InventoryUpdate`](crate::store::InventoryUpdate)'s fields in [`UPDATE_INVENTORY`]'s order (its `$2`...`$23`).
macro_rules! bind_inventory {
    ($query:expr, $i:expr) => {{
        let i: &$crate::store::InventoryUpdate = $i;
        $query
            .bind(&i.serial_number)
            .bind(&i.model)
            .bind(&i.model_name)
            .bind(&i.product_name)
            .bind(&i.device_name)
            .bind(&i.os_version)
            .bind(&i.build_version)
            .bind(&i.platform)
            .bind(&i.imei)
            .bind(&i.meid)
            .bind(&i.wifi_mac)
            .bind(&i.bluetooth_mac)
            .bind(i.supervised)
            .bind(i.encrypted)
            .bind(i.passcode_present)
            .bind(i.passcode_compliant)
            .bind(i.filevault_enabled)
            .bind(i.storage_capacity_gb)
            .bind(i.storage_available_gb)
            .bind(i.battery_level)
            .bind(i.info_updated_at)
            .bind(i.security_updated_at)
    }};
}
pub(crate) use bind_inventory;
