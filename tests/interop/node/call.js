#!/usr/bin/env node
// Call the Voximplant Management API through voxproxy with the official, unmodified
// Node client (npm `@voximplant/apiclient-nodejs`, pinned in package.json) and print
// what it returns as one JSON line on stdout. See ../README.md.
//
// Environment:
//   MODE                  required: `proxy` or `host`
//     proxy: the client keeps its default host (api.voximplant.com) and axios sends the
//            request in plain HTTP, absolute-form (POST https://api.voximplant.com/platform_api),
//            to the proxy named by https_proxy / HTTPS_PROXY (set by the caller,
//            e.g. http://127.0.0.1:8080, or http://NAME:KEY@127.0.0.1:8080).
//     host:  VOXPROXY_HOST (e.g. 127.0.0.1:8443) becomes the client's `host` option; the
//            client speaks HTTPS to it (trust voxproxy's CA with NODE_EXTRA_CA_CERTS).
//   VOXPROXY_CREDENTIALS  required: path of a credentials.json (any RSA key)
//   VOXPROXY_HOST         required in host mode
//   VOXPROXY_ACCOUNT      optional: account id, given to the client as its numeric
//                         `accountId` option (the client puts it in its JWT's `iss`)
//   VOXPROXY_METHOD       optional: API method, default GetAccountInfo
//   VOXPROXY_PARAMS       optional: JSON object of raw API parameters (snake_case)
//   VOXPROXY_TYPED        optional: `1` to call the client's typed wrapper (e.g.
//                         client.Accounts.getAccountInfo), which maps the answer through
//                         the client's type mappers: fields unknown to the API's type are
//                         dropped. Default: client.makeRequest(method, params, [[], []]),
//                         the request path every typed wrapper uses, with the answer
//                         returned as parsed JSON.
//   VOXPROXY_TIMEOUT      optional: seconds before giving up (exit 3), default 30
//
// Exit status: 0 and the result on stdout; 1 when the call failed (an HTTP error, an
// `error` in the answer, a connection or TLS error), with one JSON line on stderr;
// 2 on a usage error; 3 on timeout.
'use strict';

const VoximplantApiClient = require('@voximplant/apiclient-nodejs').default;

function fail(kind, status, fields) {
  process.stderr.write(JSON.stringify(Object.assign({ exception: kind }, fields || {})) + '\n');
  process.exit(status);
}

function lowerFirst(s) {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

// The client throws from its credentials-file callback when the file cannot be read.
process.on('uncaughtException', (err) => {
  fail(err && err.name ? err.name : 'Error', 1, { message: err && err.message, code: err && err.code });
});

function main() {
  const mode = process.env.MODE;
  const credentials = process.env.VOXPROXY_CREDENTIALS;
  if (!credentials) fail('Usage', 2, { message: 'set VOXPROXY_CREDENTIALS' });
  const options = { pathToCredentials: credentials };
  if (mode === 'host') {
    if (!process.env.VOXPROXY_HOST) fail('Usage', 2, { message: 'MODE=host needs VOXPROXY_HOST' });
    options.host = process.env.VOXPROXY_HOST;
  } else if (mode === 'proxy') {
    if (!process.env.https_proxy && !process.env.HTTPS_PROXY) {
      fail('Usage', 2, { message: 'MODE=proxy needs https_proxy or HTTPS_PROXY' });
    }
  } else {
    fail('Usage', 2, { message: 'set MODE=proxy or MODE=host' });
  }
  const account = process.env.VOXPROXY_ACCOUNT;
  if (account) {
    if (!/^-?[0-9]+$/.test(account)) {
      fail('Usage', 2, { message: 'VOXPROXY_ACCOUNT must be an integer (the client takes a number)' });
    }
    options.accountId = Number(account);
  }
  const method = process.env.VOXPROXY_METHOD || 'GetAccountInfo';
  let params = {};
  try {
    params = JSON.parse(process.env.VOXPROXY_PARAMS || '{}');
  } catch (e) {
    fail('Usage', 2, { message: 'VOXPROXY_PARAMS is not JSON: ' + e.message });
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    fail('Usage', 2, { message: 'VOXPROXY_PARAMS must be a JSON object' });
  }

  const timeout = Number(process.env.VOXPROXY_TIMEOUT || '30');
  setTimeout(() => fail('Timeout', 3, { message: 'no answer within VOXPROXY_TIMEOUT' }), timeout * 1000).unref();

  // The client reads VOXIMPLANT_CREDENTIALS in preference to its pathToCredentials
  // option; drop it so the file named by VOXPROXY_CREDENTIALS is the one it signs with,
  // even when the caller's environment carries voxproxy's own setting.
  delete process.env.VOXIMPLANT_CREDENTIALS;

  const client = new VoximplantApiClient(options);
  // The client loads its credentials asynchronously and calls onReady when done.
  client.onReady = () => {
    let call;
    if (process.env.VOXPROXY_TYPED === '1') {
      const name = lowerFirst(method);
      const group = Object.keys(client)
        .map((k) => client[k])
        .find((g) => g && typeof g === 'object' && typeof g[name] === 'function');
      if (!group) fail('Usage', 2, { message: 'no typed method ' + name + ' in the client' });
      call = group[name](params);
    } else {
      call = client.makeRequest(method, params, [[], []]);
    }
    call.then(
      (result) => {
        if (result && typeof result === 'object' && (result.error || result.errors)) {
          fail('ApiError', 1, { error: result.error || result.errors });
        }
        // Exit once written: a kept-alive connection must not hold the process open.
        process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
      },
      (err) => {
        const r = err && err.response;
        fail(err && err.name ? err.name : 'Error', 1, {
          message: err && err.message,
          code: err && err.code,
          status: r ? r.status : undefined,
          headers: r ? r.headers : undefined,
          data: r ? r.data : undefined,
        });
      }
    );
  };
}

main();
