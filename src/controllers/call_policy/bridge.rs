//! The bridge number: its voice webhook points at the bridge document, and what it had
//! before is remembered in an annotation and restored.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::decide::asset_prefix;
use super::{emit_event, find_number, twilio, Error, State, PREVIOUS_WEBHOOK_ANNOTATION};
use crate::api::{CallPolicy, TwimlStatus};
use crate::twilio::client::HttpMethod;
use crate::twilio::types::VoiceWebhook;
use crate::twilio::TwilioClient;

/// What the bridge number had before alertcall pointed it at the bridge document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousWebhook {
    pub number_sid: String,
    pub phone_number: String,
    #[serde(default)]
    pub voice_url: Option<String>,
    #[serde(default)]
    pub voice_method: Option<String>,
}

// ---- bridge number --------------------------------------------------------------------------

pub(super) fn previous_webhook(policy: &CallPolicy) -> Option<PreviousWebhook> {
    policy
        .annotations()
        .get(PREVIOUS_WEBHOOK_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
}

async fn set_previous_annotation(
    policy: &CallPolicy,
    state: &State,
    previous: Option<&PreviousWebhook>,
) -> Result<(), Error> {
    let api: Api<CallPolicy> = Api::namespaced(
        state.ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    let value = match previous {
        Some(previous) => {
            serde_json::Value::String(serde_json::to_string(previous).unwrap_or_default())
        }
        None => serde_json::Value::Null,
    };
    let patch = serde_json::json!({
        "metadata": {
            "annotations": { PREVIOUS_WEBHOOK_ANNOTATION: value },
        }
    });
    api.patch(
        &policy.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// A SID field of a number that holds a SID: Twilio answers `""` or `null` for none.
fn set(sid: &Option<String>) -> Option<String> {
    sid.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub(super) async fn restore(
    client: &TwilioClient,
    previous: &PreviousWebhook,
) -> Result<(), Error> {
    let webhook = VoiceWebhook {
        voice_url: previous.voice_url.clone(),
        voice_method: previous.voice_method.clone(),
    };
    match client
        .set_voice_webhook(&previous.number_sid, &webhook)
        .await
    {
        Ok(_) => Ok(()),
        // The number left the account: nothing of ours is on it any more.
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(twilio("restoring the bridge number's voice webhook")(error)),
    }
}

/// Points the bridge number at the bridge document; returns its SID. Restores a number the
/// policy no longer names.
pub(super) async fn configure_bridge(
    policy: &CallPolicy,
    state: &State,
    client: &TwilioClient,
    account_sid: &str,
    twiml: &TwimlStatus,
) -> Result<Option<String>, Error> {
    let previous = previous_webhook(policy);
    let wanted = policy.spec.twilio.bridge_number.as_deref();
    if let Some(previous) = &previous {
        if wanted != Some(previous.phone_number.as_str()) {
            restore(client, previous).await?;
            set_previous_annotation(policy, state, None).await?;
            return configure_bridge_fresh(policy, state, client, account_sid, twiml, None).await;
        }
    }
    configure_bridge_fresh(policy, state, client, account_sid, twiml, previous).await
}

async fn configure_bridge_fresh(
    policy: &CallPolicy,
    state: &State,
    client: &TwilioClient,
    account_sid: &str,
    twiml: &TwimlStatus,
    previous: Option<PreviousWebhook>,
) -> Result<Option<String>, Error> {
    let Some(wanted) = policy.spec.twilio.bridge_number.as_deref() else {
        return Ok(None);
    };
    let Some(number) = find_number(client, wanted)
        .await
        .map_err(twilio("looking up the bridge number"))?
    else {
        return Err(Error::NumberNotOwned {
            field: "spec.twilio.bridgeNumber",
            number: wanted.to_string(),
            account_sid: account_sid.to_string(),
            hint:
                " (IncomingPhoneNumbers): buy or port it into this account, or remove bridgeNumber",
        });
    };
    // NB: Twilio routes the number's calls to its Application or its SIP trunk and never
    // fetches the VoiceUrl then; changing the number would not make it answer with the room.
    if let Some(application_sid) = set(&number.voice_application_sid) {
        return Err(Error::BridgeNumberHasApplication {
            number: wanted.to_string(),
            application_sid,
        });
    }
    if let Some(trunk_sid) = set(&number.trunk_sid) {
        return Err(Error::BridgeNumberOnTrunk {
            number: wanted.to_string(),
            trunk_sid,
        });
    }
    let url = &twiml.urls.bridge;
    let in_place = number.voice_url.as_deref() == Some(url.as_str())
        && number
            .voice_method
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("GET"));
    if in_place {
        return Ok(Some(number.sid));
    }
    // Another policy of this install already answers on this number: fighting over it on every
    // resync would flip callers between rooms, and its original webhook would be lost.
    let ours = asset_prefix(&policy.namespace().unwrap_or_default(), &policy.name_any());
    let environment_root = url.strip_suffix(&format!("{ours}bridge.xml"));
    if let (Some(current), Some(root)) = (number.voice_url.as_deref(), environment_root) {
        if current.starts_with(root) && current.ends_with("/bridge.xml") && current != url {
            return Err(Error::BridgeNumberInUse {
                number: wanted.to_string(),
                url: current.to_string(),
            });
        }
    }
    // NB: remembered before the change, so a crash in between never loses the original.
    let own_url = number.voice_url.as_deref() == Some(url.as_str());
    if previous.as_ref().map(|p| p.number_sid.as_str()) != Some(number.sid.as_str()) && !own_url {
        let remembered = PreviousWebhook {
            number_sid: number.sid.clone(),
            phone_number: number.phone_number.clone(),
            voice_url: number.voice_url.clone(),
            voice_method: number.voice_method.clone(),
        };
        set_previous_annotation(policy, state, Some(&remembered)).await?;
    }
    client
        .set_voice_webhook(
            &number.sid,
            &VoiceWebhook {
                voice_url: Some(url.clone()),
                voice_method: Some(HttpMethod::Get.as_str().to_string()),
            },
        )
        .await
        .map_err(twilio("setting the bridge number's voice webhook"))?;
    let event = Event {
        type_: EventType::Normal,
        reason: "BridgeConfigured".into(),
        note: Some(format!("{wanted} now answers with the bridge document")),
        action: "UpdateVoiceUrl".into(),
        secondary: None,
    };
    emit_event(state, policy, event).await;
    Ok(Some(number.sid))
}
