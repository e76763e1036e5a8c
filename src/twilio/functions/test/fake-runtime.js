// A stand-in for Twilio's Functions Runtime: the global `Twilio.Response`, a context whose
// `getTwilioClient()` records Sync Map Item writes, and a way to run a handler to completion.
'use strict';

class FakeResponse {
  constructor() {
    this.statusCode = 200;
    this.headers = {};
    this.body = undefined;
  }
  setStatusCode(code) {
    this.statusCode = code;
  }
  appendHeader(name, value) {
    this.headers[name] = value;
  }
  setBody(body) {
    this.body = body;
  }
}

function install() {
  globalThis.Twilio = { Response: FakeResponse };
}

/**
 * A context with `env` as its environment variables. `failures` is a list of errors the
 * next Sync writes throw, in order (e.g. `[{code: 54208}]`), then writes succeed.
 */
function context(env = {}, failures = []) {
  const writes = [];
  const attempts = [];
  const pending = [...failures];
  const client = {
    sync: {
      v1: {
        services(service) {
          return {
            syncMaps(map) {
              return {
                syncMapItems: {
                  async create(params) {
                    attempts.push({ service, map, params });
                    const failure = pending.shift();
                    if (failure) {
                      const error = new Error(failure.message || `Sync error ${failure.code}`);
                      error.code = failure.code;
                      error.status = failure.status || 400;
                      throw error;
                    }
                    writes.push({ service, map, params });
                    return { key: params.key, data: params.data };
                  },
                },
              };
            },
          };
        },
      },
    },
  };
  return {
    ...env,
    getTwilioClient: () => client,
    writes,
    attempts,
  };
}

/** Runs `handler` and resolves with the response it called back with. */
function invoke(handler, ctx, event) {
  return new Promise((resolve, reject) => {
    const callback = (error, response) => (error ? reject(error) : resolve(response));
    Promise.resolve(handler(ctx, event, callback)).catch(reject);
  });
}

module.exports = { install, context, invoke, FakeResponse };
