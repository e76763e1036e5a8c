// The acknowledgement function under a fake Runtime: `node --test src/twilio/functions/test/`.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const runtime = require('./fake-runtime');

runtime.install();
const ack = require(path.join(__dirname, '..', 'ack.js'));

const CALL = 'CA0123456789abcdef0123456789abcdef';
const PROLOG = '<?xml version="1.0" encoding="UTF-8"?>';

function keypress(extra = {}) {
  return {
    CallSid: CALL,
    AccountSid: 'AC0123456789abcdef0123456789abcdef',
    Digits: '1',
    FinishedOnKey: '',
    attempt: 'r1-0',
    room: 'prod-oncall',
    say: 'Acknowledged. Joining the incident room.',
    language: 'en-US',
    bye: 'No acknowledgement received. Goodbye.',
    ...extra,
  };
}

test('a keypress writes one Sync Map Item, then answers with the acknowledgement TwiML', async () => {
  const ctx = runtime.context({ SYNC_SERVICE_SID: 'IS1', ACK_MAP: 'acks', ACK_TTL_SECONDS: '600' });
  const before = Date.now();
  const response = await runtime.invoke(ack.handler, ctx, keypress());
  assert.equal(ctx.writes.length, 1);
  const [write] = ctx.writes;
  assert.equal(write.service, 'IS1');
  assert.equal(write.map, 'acks');
  assert.equal(write.params.key, CALL);
  assert.equal(write.params.itemTtl, 600);
  const { at, ...rest } = write.params.data;
  assert.deepEqual(rest, { callSid: CALL, attempt: 'r1-0', digits: '1' });
  const written = Date.parse(at);
  assert.ok(written >= before - 1000 && written <= Date.now() + 1000, at);
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['Content-Type'], 'text/xml');
  assert.equal(
    response.body,
    PROLOG +
      '<Response><Say language="en-US">Acknowledged. Joining the incident room.</Say>' +
      '<Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="false" beep="onEnter">prod-oncall</Conference></Dial>' +
      '</Response>',
  );
});

test('the write happens before the TwiML is returned', async () => {
  const ctx = runtime.context();
  let answeredWith = null;
  let writesWhenAnswered = -1;
  await ack.handler(ctx, keypress(), (error, response) => {
    answeredWith = response;
    writesWhenAnswered = ctx.writes.length;
  });
  assert.ok(answeredWith);
  assert.equal(writesWhenAnswered, 1);
});

test('defaults: the default Sync service, the alertcall-acks map, three days', async () => {
  const ctx = runtime.context();
  await runtime.invoke(ack.handler, ctx, keypress({ Digits: '#' }));
  assert.equal(ctx.writes.length, 1);
  assert.equal(ctx.writes[0].service, 'default');
  assert.equal(ctx.writes[0].map, 'alertcall-acks');
  assert.equal(ctx.writes[0].params.itemTtl, 259200);
  assert.equal(ctx.writes[0].params.data.digits, '#');
});

test('voice, hold music and recording reach the TwiML; hostile text is escaped', async () => {
  const ctx = runtime.context();
  const response = await runtime.invoke(
    ack.handler,
    ctx,
    keypress({
      voice: 'Polly.Mizuki',
      language: 'ja-JP',
      say: '確認しました & <ok> "x"',
      room: 'a<b>&"c\'',
      hold: 'https://example.com/hold.mp3?a=1&b=2',
      record: 'true',
    }),
  );
  assert.equal(
    response.body,
    PROLOG +
      '<Response><Say language="ja-JP" voice="Polly.Mizuki">確認しました &amp; &lt;ok&gt; "x"</Say>' +
      '<Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="false"' +
      ' waitUrl="https://example.com/hold.mp3?a=1&amp;b=2" waitMethod="GET" beep="onEnter"' +
      ' record="record-from-start">a&lt;b&gt;&amp;"c\'</Conference></Dial></Response>',
  );
});

for (const [name, event] of [
  ['no Digits', (() => { const e = keypress(); delete e.Digits; return e; })()],
  ['empty Digits', keypress({ Digits: '' })],
  ['no CallSid', (() => { const e = keypress(); delete e.CallSid; return e; })()],
]) {
  test(`${name}: nothing is written and the call says goodbye`, async () => {
    const ctx = runtime.context();
    const response = await runtime.invoke(ack.handler, ctx, event);
    assert.equal(ctx.attempts.length, 0);
    assert.equal(ctx.writes.length, 0);
    assert.equal(
      response.body,
      PROLOG +
        '<Response><Say language="en-US">No acknowledgement received. Goodbye.</Say><Hangup/></Response>',
    );
    assert.ok(!response.body.includes('<Dial'));
  });
}

test('without bye the no-keypress answer only hangs up', () => {
  assert.equal(ack.noAckTwiml({}), PROLOG + '<Response><Hangup/></Response>');
});

test('a key already taken (54208) keeps the first item and still acknowledges', async () => {
  const ctx = runtime.context({}, [{ code: 54208, status: 409 }]);
  const response = await runtime.invoke(ack.handler, ctx, keypress());
  assert.equal(ctx.attempts.length, 1);
  assert.match(response.body, /<Dial>/);
});

test('a transient Sync error is retried once', async () => {
  const ctx = runtime.context({}, [{ code: 20500, status: 500 }]);
  await runtime.invoke(ack.handler, ctx, keypress());
  assert.equal(ctx.attempts.length, 2);
  assert.equal(ctx.writes.length, 1);
});

test('a write that fails twice is logged and the caller still joins the room', async (t) => {
  const logged = [];
  t.mock.method(console, 'error', (line) => logged.push(line));
  const ctx = runtime.context({}, [{ code: 20500 }, { code: 20500 }]);
  const response = await runtime.invoke(ack.handler, ctx, keypress());
  assert.equal(ctx.writes.length, 0);
  assert.equal(logged.length, 1);
  assert.match(logged[0], new RegExp(CALL));
  assert.match(response.body, /<Conference[^>]*>prod-oncall<\/Conference>/);
});

test('characters XML cannot carry are dropped', () => {
  const xml = ack.ackTwiml({ say: 'a\u0000b\u001bc\uffffd', language: 'en-US' });
  assert.equal(xml, PROLOG + '<Response><Say language="en-US">abcd</Say></Response>');
});
