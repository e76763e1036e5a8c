//! Sync v1: the Map the acknowledgement function writes each keypress into, and reading it back.

use super::*;
use crate::twilio::error::{Operation, TwilioError};
use crate::twilio::types::{SyncMap, SyncMapItem};

impl TwilioClient {
    /// `POST /v1/Services/{ServiceSid}/Maps` with `UniqueName`. Twilio answers 409 (code 54301)
    /// when the name is taken: see [`TwilioError::is_conflict`].
    pub async fn create_sync_map(
        &self,
        service_sid: &str,
        unique_name: &str,
    ) -> Result<SyncMap, TwilioError> {
        let url = self.sync_url(&["Services", service_sid, "Maps"])?;
        let form = vec![("UniqueName".to_string(), unique_name.to_string())];
        self.request(Operation::CreateSyncMap, Verb::Post, url, Body::Form(&form))
            .await
    }

    /// `GET /v1/Services/{ServiceSid}/Maps/{MapSid}/Items`, at most `max_pages` pages of
    /// the configured page size (the client's own cap still applies).
    pub async fn list_sync_map_items(
        &self,
        service_sid: &str,
        map: &str,
    ) -> Result<Vec<SyncMapItem>, TwilioError> {
        let url = self.sync_url(&["Services", service_sid, "Maps", map, "Items"])?;
        self.list(Operation::ListSyncMapItems, url, &[], "items")
            .await
    }
}
