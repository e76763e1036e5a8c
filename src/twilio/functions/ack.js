// alertcall acknowledgement function (alertcall:ack-ledger/v1)
//
// A protected Twilio Serverless Function, deployed by alertcall as `/alertcall/ack` in the
// install's Serverless service. It is the `action` of every page call's <Gather>. Twilio
// requests it (POST, signed with X-Twilio-Signature; "protected" makes Twilio's Runtime reject
// an unsigned request) with the call's standard parameters plus `Digits`.
//
// On a keypress it FIRST records the acknowledgement in the install's Twilio Sync Map, and only
// then answers with TwiML. The operator reads that map while a page is live, so a keypress
// counts even when the person hangs up a second later, before reaching the room, and even when
// the operator has no inbound connectivity: the call's Events only appear 15 minutes after the
// call ends, and the room only lists who is in it now.
//
// Contract (what alertcall sets; change it only together with the operator and the simulator's
// emulation, `crates/twilio-sim/src/functions.rs`, which a test holds equal to this file):
//
// Environment variables of the Serverless environment:
//   SYNC_SERVICE_SID  the Sync service (IS...) holding the map; `default` when unset
//   ACK_MAP           the map's unique name or SID; `alertcall-acks` when unset
//   ACK_TTL_SECONDS   how long an item lives, in seconds; 259200 (3 days) when unset. Items are
//                     only needed while a page is live; the TTL keeps the map small for free.
//
// Query string of the action URL (names chosen not to clash with Twilio's PascalCase parameters,
// which arrive in the same `event`):
//   attempt   the AlertCall attempt id this call belongs to (recorded in the item)
//   room      the conference room to join; without it the caller hears the confirmation only
//   say       the confirmation spoken before joining the room
//   language  <Say language>
//   voice     <Say voice>, optional
//   hold      hold music URL (<Conference waitUrl>, fetched with GET), optional
//   record    `true`: the room is recorded from its start
//   bye       spoken when the request carries no keypress, optional
//
// Twilio parameters read: CallSid, Digits.
//
// The Sync Map Item (key: the CallSid; the first keypress of a call wins, a second request for
// the same call finds the key taken, error 54208, and keeps the first):
//   {"callSid": "CA...", "attempt": "<attempt id>", "digits": "1", "at": "<ISO 8601 time>"}
//
// Responses (Content-Type text/xml):
//   keypress     <Say language voice>{say}</Say><Dial><Conference ...>{room}</Conference></Dial>,
//                the same document alertcall's `page::documents::ack_document` renders
//   no keypress  (no or empty `Digits`, e.g. a Gather that timed out, or no `CallSid`): nothing
//                is written and nothing acknowledges: <Say language voice>{bye}</Say><Hangup/>,
//                the <Say> only when `bye` is set
//   write failed the item could not be written after one retry: the caller still hears the
//                confirmation and joins the room (the room and the call's Events corroborate
//                later), and the failure is logged for the Twilio console. Refusing the person
//                would leave the page unacknowledged AND the responder outside the room.
//
// No npm package is needed: `context.getTwilioClient()` (the service is created with
// IncludeCredentials=true) and the global `Twilio.Response` come with Twilio's Runtime.

'use strict';

const DEFAULT_MAP = 'alertcall-acks';
const DEFAULT_TTL_SECONDS = 259200;
const DUPLICATE_KEY = 54208;

// XML 1.0 cannot carry these even escaped; they are dropped, as alertcall's TwiML writer does.
function isXmlChar(code) {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

function escapeText(value) {
  let out = '';
  for (const c of String(value)) {
    if (!isXmlChar(c.codePointAt(0))) continue;
    if (c === '&') out += '&amp;';
    else if (c === '<') out += '&lt;';
    else if (c === '>') out += '&gt;';
    else out += c;
  }
  return out;
}

const ATTRIBUTE_ESCAPES = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

function attribute(name, value) {
  if (value === undefined || value === null) return '';
  let out = '';
  for (const c of String(value)) {
    if (!isXmlChar(c.codePointAt(0))) continue;
    out += ATTRIBUTE_ESCAPES[c] || c;
  }
  return ` ${name}="${out}"`;
}

function nonEmpty(value) {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function say(text, event) {
  return (
    '<Say' +
    attribute('language', nonEmpty(event.language)) +
    attribute('voice', nonEmpty(event.voice)) +
    '>' +
    escapeText(text) +
    '</Say>'
  );
}

function document(body) {
  return '<?xml version="1.0" encoding="UTF-8"?><Response>' + body + '</Response>';
}

/** The acknowledgement TwiML: the confirmation, then the room. */
function ackTwiml(event) {
  let body = '';
  if (nonEmpty(event.say)) body += say(event.say, event);
  const room = nonEmpty(event.room);
  if (room) {
    const hold = nonEmpty(event.hold);
    body +=
      '<Dial><Conference' +
      attribute('startConferenceOnEnter', 'true') +
      attribute('endConferenceOnExit', 'false') +
      attribute('waitUrl', hold) +
      attribute('waitMethod', hold ? 'GET' : undefined) +
      attribute('beep', 'onEnter') +
      attribute('record', event.record === 'true' ? 'record-from-start' : undefined) +
      '>' +
      escapeText(room) +
      '</Conference></Dial>';
  }
  return document(body);
}

/** What a request without a keypress gets: goodbye, and the call ends. */
function noAckTwiml(event) {
  const bye = nonEmpty(event.bye);
  return document((bye ? say(bye, event) : '') + '<Hangup/>');
}

/** The Sync Map Item's data for a keypress. */
function ackItem(event, now) {
  return {
    callSid: String(event.CallSid || ''),
    attempt: String(event.attempt || ''),
    digits: String(event.Digits),
    at: now.toISOString(),
  };
}

function ttlSeconds(context) {
  const ttl = Number.parseInt(context.ACK_TTL_SECONDS, 10);
  return Number.isInteger(ttl) && ttl > 0 ? ttl : DEFAULT_TTL_SECONDS;
}

async function record(context, event) {
  const item = ackItem(event, new Date());
  const items = context
    .getTwilioClient()
    .sync.v1.services(nonEmpty(context.SYNC_SERVICE_SID) || 'default')
    .syncMaps(nonEmpty(context.ACK_MAP) || DEFAULT_MAP).syncMapItems;
  const create = () => items.create({ key: item.callSid, data: item, itemTtl: ttlSeconds(context) });
  try {
    await create();
  } catch (first) {
    if (first && first.code === DUPLICATE_KEY) return;
    // NB: one retry covers a transient Sync error; the call must not wait long on Twilio.
    try {
      await create();
    } catch (second) {
      if (second && second.code === DUPLICATE_KEY) return;
      console.error(`alertcall: recording the acknowledgement of ${item.callSid} failed: ${second}`);
    }
  }
}

function respond(callback, xml) {
  const response = new Twilio.Response();
  response.appendHeader('Content-Type', 'text/xml');
  response.setBody(xml);
  callback(null, response);
}

exports.handler = async function (context, event, callback) {
  if (!nonEmpty(event.Digits) || !nonEmpty(event.CallSid)) {
    return respond(callback, noAckTwiml(event));
  }
  await record(context, event);
  return respond(callback, ackTwiml(event));
};

// For the tests and the operator's own checks; Twilio's Runtime only calls `handler`.
exports.ackTwiml = ackTwiml;
exports.noAckTwiml = noAckTwiml;
exports.ackItem = ackItem;
