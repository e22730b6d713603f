/*
 * inferlab certificate verifier - runs in this browser tab. It makes no network request unless
 * asked to check online (the "Check online" button; automatic when the page itself is served over
 * http(s)); opened from disk (file://) it works entirely offline.
 *
 * The same checks as `python -m autograder verify` (autograder/certificates/verifier.py):
 *   1. JSON         at most 64 KB, valid JSON, no duplicate keys, not too deep, few enough
 *                   objects, no blank-node labels - all before any JSON-LD work
 *   2. structure    an OpenBadgeCredential under the VC 2.0 + Open Badges 3.0 contexts
 *   3. proof        one embedded DataIntegrityProof, cryptosuite eddsa-rdfc-2022
 *   4. issuer       the issuer is a did:web in a trust list (which list decides the verdict); its
 *                   DID document from that list, or resolved online from the issuer's domain
 *   5. issuer key   the proof's verificationMethod is an assertion key of that DID document, not
 *                   retired before the proof was made - checked before any canonicalization
 *   6. signature    Ed25519 (WebCrypto) over SHA-256(canonical proof config) ||
 *                   SHA-256(canonical document); canonical = RDFC-1.0 N-Quads (jsonld.js,
 *                   bundled in vendor/ld-bundle.js with the JSON-LD contexts)
 *   7. status       the credential's bit in the issuer's signed Bitstring Status List is not set
 *                   (fetched online, or the copy cached in the trust list "as of" its date)
 *   8. dates        validFrom / proof created not in the future, validUntil not past
 *
 * Whom it trusts: trusted-issuers.js (the published issuers), demo-issuers.js (the throwaway demo
 * issuer: verdict DEMO) and an issuer list the user uploads on the page (verdict UNOFFICIAL; an
 * upload never overrides a published issuer).
 */
(function () {
  'use strict';

  var VC_V2 = 'https://www.w3.org/ns/credentials/v2';
  var TRUST_FORMAT = 'inferlab-trusted-issuers/2';
  var ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  var CLOCK_SKEW_MS = 5 * 60 * 1000;
  var FETCH_TIMEOUT_MS = 10000;
  var DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
  var LOOPBACK = ['127.0.0.1', 'localhost', '[::1]', '::1'];

  // Limits checked before any JSON-LD work (a crafted input is refused at once, with a reason).
  var LIMITS = {
    bytes: 64000,                 // a credential, as UTF-8 text (and a #vc= link once inflated)
    depth: 24,                    // nesting of objects and arrays
    containers: 100,              // JSON objects and arrays (a credential has about 20)
    nodes: 40,                    // objects that become RDF nodes (a credential has fewer than 20)
    linkChars: 100000,            // the #vc= part of a link, before inflating (a real one: ~3000)
    fetchBytes: 256 * 1024,       // a DID document or status list credential fetched online
    uploadBytes: 1024 * 1024,     // an issuer list uploaded on the page
    statusListBytes: 1024 * 1024, // a status list's bitstring, once inflated (8 M entries)
    statusListMinBytes: 16384     // ... and at least 131072 entries (the spec's minimum)
  };

  function fail(message) { throw new Error(message); }
  function isObject(x) { return x !== null && typeof x === 'object' && !Array.isArray(x); }
  function has(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }
  function q(x) { return JSON.stringify(x); }

  // ---- byte streams with a cap (inflating, fetching) ----------------------------------------
  async function readCapped(stream, maxBytes, what) {
    var reader = stream.getReader(), chunks = [], total = 0;
    for (;;) {
      var step = await reader.read();
      if (step.done) break;
      total += step.value.length;
      if (total > maxBytes) {
        reader.cancel().catch(function () {});
        fail(what + ' is larger than ' + maxBytes + ' bytes: refused');
      }
      chunks.push(step.value);
    }
    var out = new Uint8Array(total), at = 0;
    chunks.forEach(function (c) { out.set(c, at); at += c.length; });
    return out;
  }

  function inflate(bytes, format, maxBytes, what) {
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream(format));
    return readCapped(stream, maxBytes, what);
  }

  function base64urlDecode(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text)) fail('not base64url');
    var b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  function utf8(bytes) { return new TextDecoder('utf-8', {fatal: true}).decode(bytes); }

  // ---- strict JSON: size, depth, duplicate keys, object count, blank-node labels ------------
  /*
   * JSON.parse silently keeps the last of two equal keys, so {"name": "A", "name": "B"} would
   * show one value while another tool uses the other. This scanner walks the (already valid)
   * JSON text once, iteratively, and tracks the keys of every open object.
   */
  var STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

  function scanJson(text, maxContainers) {
    var stack = [], expectKey = false, containers = 0, maxDepth = 0;
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (ch === '"') {
        STRING.lastIndex = i;
        var m = STRING.exec(text);
        if (!m) fail('a string at character ' + i + ' is not valid JSON');
        i += m[0].length - 1;
        var top = stack[stack.length - 1];
        if (expectKey && top) {
          var key = JSON.parse(m[0]);
          if (top.has(key)) fail('duplicate key ' + q(key) + ' in one object: refused');
          top.add(key);
          expectKey = false;
        }
      } else if (ch === '{' || ch === '[') {
        stack.push(ch === '{' ? new Set() : null);
        containers++;
        maxDepth = Math.max(maxDepth, stack.length);
        if (stack.length > LIMITS.depth) fail('nested deeper than ' + LIMITS.depth + ' levels: refused');
        if (containers > maxContainers) fail('more than ' + maxContainers + ' JSON objects and arrays: refused');
        expectKey = ch === '{';
      } else if (ch === '}' || ch === ']') {
        stack.pop();
      } else if (ch === ',') {
        expectKey = !!stack[stack.length - 1];
      }
    }
    return {containers: containers, depth: maxDepth};
  }

  /*
   * Without blank-node labels ("_:x") and without contexts inside the document, every JSON object
   * becomes at most one RDF node and every node is referenced from one place only: the graph is a
   * tree, which RDF canonicalization handles quickly. Labels are what lets a few kilobytes build
   * a blank-node clique that takes minutes to canonicalize; an issued credential has none.
   * Returns the number of node objects (objects that are not JSON-LD values).
   */
  function countNodes(value, path) {
    if (typeof value === 'string') {
      if (value.slice(0, 2) === '_:') fail('blank node label ' + q(value) + ' at ' + path + ': refused');
      return 0;
    }
    if (Array.isArray(value)) {
      return value.reduce(function (n, v, i) { return n + countNodes(v, path + '[' + i + ']'); }, 0);
    }
    if (!isObject(value)) return 0;
    return Object.keys(value).reduce(function (n, k) {
      if (k === '@context' && path !== '$') {
        fail('an embedded @context (at ' + path + '): only the top-level bundled contexts are allowed');
      }
      return n + (k === '@context' ? 0 : countNodes(value[k], path + '.' + k));
    }, '@value' in value ? 0 : 1);
  }

  function checkNodes(doc) {
    var nodes = countNodes(doc, '$');
    if (nodes > LIMITS.nodes) fail(nodes + ' node objects: more than the limit of ' + LIMITS.nodes + ' (a credential has fewer than 20)');
    return nodes;
  }

  /** JSON text within a size and a container count, without duplicate keys: {data, shape}. */
  function parseJson(text, maxBytes, maxContainers) {
    if (typeof text !== 'string') fail('no text given');
    if (text.length > maxBytes || new TextEncoder().encode(text).length > maxBytes) {
      fail('larger than the limit of ' + maxBytes + ' bytes: refused');
    }
    var data;
    try { data = JSON.parse(text); } catch (e) { fail('not valid JSON (' + e.message + ')'); }
    return {data: data, shape: scanJson(text, maxContainers)};
  }

  /** A credential's text: every limit, before any JSON-LD work. */
  function parseStrict(text) {
    var parsed = parseJson(text, LIMITS.bytes, LIMITS.containers);
    parsed.shape.nodes = checkNodes(parsed.data);
    return parsed;
  }

  // ---- multibase base58btc and Multikey -----------------------------------------------------
  function base58Decode(text) {
    var bytes = [0];
    for (var i = 0; i < text.length; i++) {
      var value = ALPHABET.indexOf(text[i]);
      if (value < 0) fail('"' + text[i] + '" is not a base58btc character');
      var carry = value;
      for (var j = 0; j < bytes.length; j++) {
        carry += bytes[j] * 58;
        bytes[j] = carry & 0xff;
        carry >>= 8;
      }
      while (carry > 0) { bytes.push(carry & 0xff); carry >>= 8; }
    }
    var zeros = 0;
    while (zeros < text.length && text[zeros] === '1') zeros++;
    var out = bytes.reverse();
    while (out.length > 1 && out[0] === 0) out.shift();
    if (out.length === 1 && out[0] === 0) out = [];
    return new Uint8Array(new Array(zeros).fill(0).concat(out));
  }

  function multibaseDecode(text) {
    if (typeof text !== 'string' || text[0] !== 'z' || text.length < 2 || text.length > 200) {
      fail("expected a multibase base58btc string starting with 'z'");
    }
    return base58Decode(text.slice(1));
  }

  function ed25519FromMultikey(multikey) {
    var data = multibaseDecode(multikey);
    if (data.length !== 34 || data[0] !== 0xed || data[1] !== 0x01) {
      fail('not an Ed25519 Multikey (expected multicodec 0xed01 + 32 bytes)');
    }
    return data.slice(2);
  }

  // ---- did:web ------------------------------------------------------------------------------
  /** did:web:host%3Aport:path -> {did, host, origin, base, documentUrl}; throws when malformed. */
  function parseDidWeb(did) {
    if (typeof did !== 'string' || did.indexOf('did:web:') !== 0) fail(q(did) + ' is not a did:web');
    var parts = did.slice('did:web:'.length).split(':');
    var host = decodeURIComponent(parts[0]).toLowerCase();
    if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/.test(host)) fail(q(did) + ' names no valid host');
    parts.slice(1).forEach(function (p) {
      if (!/^[A-Za-z0-9._~%-]+$/.test(p)) fail(q(did) + ' has an invalid path segment');
    });
    var hostname = host.replace(/:\d+$/, '');
    var scheme = LOOPBACK.indexOf(hostname) >= 0 ? 'http://' : 'https://';
    var origin = scheme + host;
    var path = parts.slice(1).map(decodeURIComponent).join('/');
    var base = origin + (path ? '/' + path : '');
    return {did: did, host: host, origin: origin, base: base,
            documentUrl: base + (path ? '/did.json' : '/.well-known/did.json')};
  }

  /** Is `url` on the issuer's own domain (same origin, under its path for a path-ful did:web)? */
  function onIssuerDomain(url, didInfo) {
    var u;
    try { u = new URL(url); } catch (e) { return false; }
    if (u.origin !== new URL(didInfo.origin).origin) return false;
    return u.href.indexOf(didInfo.base + '/') === 0;
  }

  function absoluteId(id, did) { return typeof id === 'string' && id[0] === '#' ? did + id : id; }

  /**
   * The key of `verificationMethod` in `doc` (the issuer's DID document): it must be one of its
   * assertion keys, an Ed25519 Multikey, and not retired at `created`. Returns {publicKey, label}.
   */
  function keyFromDidDocument(doc, did, verificationMethod, created) {
    if (!isObject(doc) || doc.id !== did) fail('the DID document is not that of ' + did);
    if (typeof verificationMethod !== 'string' || verificationMethod.indexOf(did + '#') !== 0) {
      fail('the proof\'s key ' + q(verificationMethod) + ' is not a key of the issuer ' + did);
    }
    var methods = Array.isArray(doc.verificationMethod) ? doc.verificationMethod : [];
    var vm = methods.filter(function (m) {
      return isObject(m) && absoluteId(m.id, did) === verificationMethod;
    })[0];
    if (!vm) fail(verificationMethod + ' is not in the issuer\'s DID document');
    var assertion = Array.isArray(doc.assertionMethod) ? doc.assertionMethod : [];
    var listed = assertion.some(function (a) {
      return absoluteId(typeof a === 'string' ? a : (a || {}).id, did) === verificationMethod;
    });
    if (!listed) fail(verificationMethod + ' is not an assertion key of the issuer');
    if (vm.type !== 'Multikey' || absoluteId(vm.controller, did) !== did) {
      fail(verificationMethod + ' is not a Multikey controlled by ' + did);
    }
    var label = verificationMethod.slice(did.length);
    if (vm.revoked !== undefined) {
      var retired = parseTime(vm.revoked, 'the key\'s retirement date');
      if (parseTime(created, 'proof created') >= retired) {
        fail('key ' + label + ' was retired on ' + vm.revoked + ': a proof made at or after that (' +
          created + ') is refused');
      }
      label += ' (retired on ' + vm.revoked + ', after this proof)';
    }
    return {publicKey: ed25519FromMultikey(vm.publicKeyMultibase), label: label};
  }

  // ---- trust lists --------------------------------------------------------------------------
  function listEntries(list) {
    if (!isObject(list) || list.format !== TRUST_FORMAT || !Array.isArray(list.issuers)) return [];
    return list.issuers.filter(function (e) { return isObject(e) && typeof e.did === 'string'; });
  }

  function publishedIssuers() { return listEntries(window.INFERLAB_TRUSTED_ISSUERS); }
  function demoIssuers() { return listEntries(window.INFERLAB_DEMO_ISSUERS); }

  /** The trust entry for `did`, and where it came from: published wins, then demo, then upload. */
  function findIssuer(did, uploaded) {
    var sources = [['published', publishedIssuers()], ['demo', demoIssuers()], ['uploaded', uploaded || []]];
    for (var i = 0; i < sources.length; i++) {
      var entry = sources[i][1].filter(function (e) { return e.did === did; })[0];
      if (entry) return {entry: entry, source: sources[i][0]};
    }
    return null;
  }

  /** An uploaded file: a trust list (format /2, e.g. a service's trust.json) or one entry of it. */
  function parseUploadedIssuers(text) {
    var data = parseJson(text, LIMITS.uploadBytes, 10000).data;
    var entries = isObject(data) && data.format === TRUST_FORMAT ? listEntries(data)
      : (isObject(data) && typeof data.did === 'string' ? [data] : []);
    if (!entries.length) fail('not an issuer list (' + TRUST_FORMAT + ') nor one entry of it');
    entries.forEach(function (e) { parseDidWeb(e.did); });
    var published = publishedIssuers().map(function (e) { return e.did; });
    return {
      entries: entries.filter(function (e) { return published.indexOf(e.did) < 0; }),
      ignored: entries.filter(function (e) { return published.indexOf(e.did) >= 0; })
    };
  }

  // ---- online: fetching from the issuer's domain --------------------------------------------
  async function fetchJson(url, didInfo) {
    if (!onIssuerDomain(url, didInfo)) fail(url + ' is not on the issuer\'s domain ' + didInfo.host);
    var response = await fetch(url, {cache: 'no-store', credentials: 'omit', redirect: 'error',
                                      headers: {Accept: 'application/json'},
                                      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS)});
    if (!response.ok) fail(url + ' answered HTTP ' + response.status);
    var bytes = await readCapped(response.body, LIMITS.fetchBytes, url);
    return parseJson(utf8(bytes), LIMITS.fetchBytes, LIMITS.containers).data;
  }

  // ---- eddsa-rdfc-2022 ------------------------------------------------------------------------
  async function sha256(text) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  }

  async function hashData(unsecured, options) {
    var config = Object.assign({}, options);
    delete config.proofValue;
    config['@context'] = unsecured['@context'];
    var canonicalConfig = await InferlabLD.canonize(config);
    var canonicalDocument = await InferlabLD.canonize(unsecured);
    var a = await sha256(canonicalConfig), b = await sha256(canonicalDocument);
    var out = new Uint8Array(a.length + b.length);
    out.set(a, 0); out.set(b, a.length);
    return out;
  }

  /** The one embedded proof (an array of one is accepted), its fields checked. */
  function checkProofShape(proof) {
    if (Array.isArray(proof)) {
      if (proof.length !== 1) fail('the credential carries ' + proof.length + ' proofs: exactly one is accepted');
      proof = proof[0];
    }
    if (!isObject(proof)) fail("the credential has no proof object (expected one embedded 'proof')");
    if (proof.type !== 'DataIntegrityProof') {
      fail('unsupported proof type ' + q(proof.type) + ": expected 'DataIntegrityProof'");
    }
    if (proof.cryptosuite !== 'eddsa-rdfc-2022') {
      fail('unknown cryptosuite ' + q(proof.cryptosuite) + ": this verifier supports only 'eddsa-rdfc-2022'");
    }
    ['verificationMethod', 'proofPurpose', 'proofValue', 'created'].forEach(function (f) {
      if (typeof proof[f] !== 'string' || !proof[f]) fail("the proof has no '" + f + "'");
    });
    if (proof.proofPurpose !== 'assertionMethod') {
      fail("proofPurpose is '" + proof.proofPurpose + "', expected 'assertionMethod'");
    }
    if (!DATETIME.test(proof.created)) fail("proof 'created' is not an XML Schema dateTime");
    return proof;
  }

  /** True when `proof` is a valid signature of `doc` (without its proof) by `publicKey`. */
  async function verifySignature(doc, proof, publicKey) {
    var unsecured = Object.assign({}, doc);
    delete unsecured.proof;
    var options = Object.assign({}, proof);
    delete options.proofValue;
    var signature;
    try { signature = multibaseDecode(proof.proofValue); } catch (e) {
      fail('proofValue is not multibase base58btc: ' + e.message);
    }
    if (signature.length !== 64) return false;
    var data = await hashData(unsecured, options);
    var key = await crypto.subtle.importKey('raw', publicKey, {name: 'Ed25519'}, false, ['verify']);
    return crypto.subtle.verify({name: 'Ed25519'}, key, signature, data);
  }

  // ---- structure ----------------------------------------------------------------------------
  function parseTime(value, what) {
    if (typeof value !== 'string' || !DATETIME.test(value)) {
      fail(what + ' ' + q(value) + ' is not a date-time with a time zone');
    }
    return new Date(value);
  }

  function checkContexts(doc) {
    var ctx = [].concat(doc['@context']);
    if (ctx[0] !== VC_V2) fail('the first @context must be ' + VC_V2 + ' (a VC 2.0 credential)');
    ctx.forEach(function (c) {
      if (typeof c !== 'string' || !has(InferlabLD.contexts, c)) {
        fail('unknown @context ' + q(c) + ': only the bundled contexts are allowed');
      }
    });
  }

  function optionalString(obj, key, what) {
    if (key in obj && typeof obj[key] !== 'string') fail(what + ' must be a string');
  }

  function structure(cred) {
    if (!isObject(cred)) fail('a credential is a JSON object');
    checkContexts(cred);
    var types = [].concat(cred.type);
    ['VerifiableCredential', 'OpenBadgeCredential'].forEach(function (t) {
      if (types.indexOf(t) < 0) fail("type does not include '" + t + "'");
    });
    if (typeof cred.id !== 'string') fail('the credential has no id');
    if (!isObject(cred.issuer) || typeof cred.issuer.id !== 'string') fail('the issuer must be a Profile object with an id');
    optionalString(cred.issuer, 'name', 'the issuer\'s name');
    var s = cred.credentialSubject;
    if (!isObject(s) || !isObject(s.achievement) || typeof s.achievement.name !== 'string') {
      fail('credentialSubject.achievement with a name is missing');
    }
    if ('criteria' in s.achievement) {
      if (!isObject(s.achievement.criteria)) fail('the achievement\'s criteria must be an object');
      optionalString(s.achievement.criteria, 'narrative', 'the criteria\'s narrative');
    }
    if ('identifier' in s) {
      if (!Array.isArray(s.identifier) || !s.identifier.every(isIdentityObject)) {
        fail('credentialSubject.identifier must be a list of IdentityObjects (identityType, identityHash)');
      }
    }
    parseTime(cred.validFrom, 'validFrom');
    if ('validUntil' in cred) parseTime(cred.validUntil, 'validUntil');
    if ('credentialStatus' in cred) statusEntry(cred);
    return 'OpenBadgeCredential (VC 2.0) ' + cred.id;
  }

  function isIdentityObject(x) {
    return isObject(x) && typeof x.identityType === 'string' && typeof x.identityHash === 'string';
  }

  function subjectName(cred) {
    var ids = cred.credentialSubject.identifier || [];
    for (var i = 0; i < ids.length; i++) {
      if (ids[i].identityType === 'name' && !ids[i].hashed) return ids[i].identityHash;
    }
    return null;
  }

  // ---- revocation: Bitstring Status List ----------------------------------------------------
  /** The credential's BitstringStatusListEntry: {index, url}; throws when malformed. */
  function statusEntry(cred) {
    var s = cred.credentialStatus;
    if (Array.isArray(s) && s.length === 1) s = s[0];
    if (!isObject(s) || s.type !== 'BitstringStatusListEntry') fail('credentialStatus must be one BitstringStatusListEntry');
    if (s.statusPurpose !== 'revocation') fail('credentialStatus.statusPurpose must be "revocation"');
    if (typeof s.statusListIndex !== 'string' || !/^(0|[1-9]\d{0,8})$/.test(s.statusListIndex)) {
      fail('credentialStatus.statusListIndex must be a decimal string');
    }
    if (typeof s.statusListCredential !== 'string') fail('credentialStatus.statusListCredential is missing');
    return {index: Number(s.statusListIndex), url: s.statusListCredential};
  }

  /** Bits of a status list's encodedList: "u" + base64url(GZIP(bits)), inflation capped. */
  async function decodeStatusList(encoded) {
    if (typeof encoded !== 'string' || encoded[0] !== 'u') fail('encodedList is not multibase base64url ("u...")');
    var bits = await inflate(base64urlDecode(encoded.slice(1)), 'gzip', LIMITS.statusListBytes, 'the status list');
    if (bits.length < LIMITS.statusListMinBytes) {
      fail('a status list has at least ' + LIMITS.statusListMinBytes * 8 + ' entries, this one ' + bits.length * 8);
    }
    return bits;
  }

  function bitIsSet(bits, index) {
    if (index >= bits.length * 8) fail('status index ' + index + ' is outside the list (' + bits.length * 8 + ' entries)');
    return (bits[index >> 3] >> (7 - (index & 7))) & 1;
  }

  /** Check a status list credential (signed by the issuer's key) and return its bits. */
  async function verifiedStatusList(list, url, did, didDocument) {
    if (!isObject(list)) fail('the status list is not a JSON object');
    checkNodes(list);
    checkContexts(list);
    if ([].concat(list.type).indexOf('BitstringStatusListCredential') < 0) fail('not a BitstringStatusListCredential');
    if (list.id !== url) fail('the status list says it is ' + q(list.id) + ', not ' + url);
    var issuer = isObject(list.issuer) ? list.issuer.id : list.issuer;
    if (issuer !== did) fail('the status list is issued by ' + q(issuer) + ', not ' + did);
    var subject = list.credentialSubject;
    if (!isObject(subject) || subject.type !== 'BitstringStatusList' || subject.statusPurpose !== 'revocation') {
      fail('the status list has no revocation BitstringStatusList subject');
    }
    var proof = checkProofShape(list.proof);
    var key = keyFromDidDocument(didDocument, did, proof.verificationMethod, proof.created);
    if (!(await verifySignature(list, proof, key.publicKey))) fail('the status list\'s signature does not verify');
    return decodeStatusList(subject.encodedList);
  }

  // ---- the issuer: trust entry, DID document, status list (cached or online) ----------------
  /**
   * Resolve what the credential needs from its issuer. Online (when asked), the DID document and
   * the status list come from the issuer's own domain; offline, from the trust list's copies.
   */
  async function issuerData(entry, didInfo, statusUrl, online) {
    var data = {didDocument: entry.didDocument, documentNote: 'from the trust list', statusList: null,
                statusNote: null, onlineStatus: false, onlineError: null};
    if (online) {
      try {
        data.didDocument = await fetchJson(didInfo.documentUrl, didInfo);
        data.documentNote = 'resolved online at ' + didInfo.documentUrl;
      } catch (e) {
        data.onlineError = e.message;
      }
      if (statusUrl && !data.onlineError) {
        try {
          data.statusList = await fetchJson(statusUrl, didInfo);
          data.onlineStatus = true;
        } catch (e) {
          data.onlineError = e.message;
        }
      }
    }
    if (!data.statusList && statusUrl && isObject(entry.statusLists) && has(entry.statusLists, statusUrl)) {
      data.statusList = entry.statusLists[statusUrl];
      data.statusNote = 'as of ' + (entry.fetched || 'an unknown date');
    }
    return data;
  }

  async function checkRevocation(cred, did, didInfo, data) {
    if (!('credentialStatus' in cred)) {
      return {ok: false, detail: 'not checked: the credential has no revocation status entry (credentialStatus)'};
    }
    var status = statusEntry(cred);
    if (!onIssuerDomain(status.url, didInfo)) fail('the status list ' + status.url + ' is not on the issuer\'s domain');
    var offlineNote = data.onlineError ? ' (the online check failed: ' + data.onlineError + ')' : '';
    if (!data.statusList) {
      return {ok: false, detail: 'not checked: the trust list has no copy of the status list ' + status.url +
        '; use "Check online"' + offlineNote};
    }
    var bits = await verifiedStatusList(data.statusList, status.url, did, data.didDocument);
    var when = data.onlineStatus ? 'checked online just now' : data.statusNote + offlineNote;
    if (bitIsSet(bits, status.index)) return {ok: false, revoked: true, detail: 'REVOKED by the issuer (status list ' + when + ')'};
    return {ok: true, detail: 'not revoked (signed status list, ' + when + ')'};
  }

  // ---- the verification ---------------------------------------------------------------------
  function checkDates(cred, proof, now) {
    var problems = [];
    if (parseTime(cred.validFrom, 'validFrom') - now > CLOCK_SKEW_MS) problems.push('not valid before ' + cred.validFrom);
    if (parseTime(proof.created, 'proof created') - now > CLOCK_SKEW_MS) problems.push('proof created in the future');
    if ('validUntil' in cred && parseTime(cred.validUntil, 'validUntil') < now) problems.push('expired on ' + cred.validUntil);
    return {ok: !problems.length, detail: problems.join('; ') ||
      'valid from ' + cred.validFrom + ', ' + ('validUntil' in cred ? 'until ' + cred.validUntil : 'no expiry')};
  }

  function defaultOnline() { return location.protocol === 'http:' || location.protocol === 'https:'; }

  /**
   * Verify credential JSON text. options: {online, uploaded (trust entries), now}; defaults: the
   * page's uploaded issuers, online only when the page is served over http(s).
   * Resolves to {verdict, valid, checks: [{name, ok, detail}], summary, credential, source}.
   */
  async function verifyCredential(text, options) {
    options = options || {};
    var result = {verdict: 'INVALID', valid: false, checks: [], credential: null, source: null};
    function add(name, ok, detail) { result.checks.push({name: name, ok: ok, detail: detail}); return ok; }
    try {
      await runChecks(text, options, result, add);
    } catch (e) {
      add('error', false, 'could not be checked: ' + (e && e.message || String(e)));
    }
    return finish(result);
  }

  async function runChecks(text, options, result, add) {
    var now = options.now ? new Date(options.now) : new Date();
    var online = options.online === undefined ? defaultOnline() : !!options.online;
    var uploaded = options.uploaded === undefined ? uploadedIssuers : options.uploaded;
    var parsed;
    try { parsed = parseStrict(text); } catch (e) { return add('JSON', false, e.message); }
    add('JSON', true, 'parsed: ' + parsed.shape.nodes + ' nodes, depth ' + parsed.shape.depth + ', within the limits');
    var cred = parsed.data;
    try { add('structure', true, structure(cred)); } catch (e) { return add('structure', false, e.message); }
    result.credential = cred;
    var proof;
    try {
      proof = checkProofShape(cred.proof);
      add('proof', true, proof.type + ' / ' + proof.cryptosuite + ', created ' + proof.created);
    } catch (e) { return add('proof', false, e.message); }

    var did = cred.issuer.id, found = findIssuer(did, uploaded), didInfo, data, key;
    try {
      didInfo = parseDidWeb(did);
      if (!found) fail(did + ' is not a published issuer of this course (' + publishedIssuers().length +
        ' published); a self-made issuer proves nothing');
      var statusUrl = 'credentialStatus' in cred ? statusEntry(cred).url : null;
      // the demo issuer's domain does not exist: its data is only ever the demo list's copy
      data = await issuerData(found.entry, didInfo, statusUrl, online && found.source !== 'demo');
      result.source = found.source;
      add('issuer', true, SOURCE_LABEL[found.source] + ' ' + q(found.entry.name || did) + ' (' + did +
        '), DID document ' + data.documentNote);
    } catch (e) { return add('issuer', false, e.message); }

    try {
      key = keyFromDidDocument(data.didDocument, did, proof.verificationMethod, proof.created);
      add('issuer key', true, key.label + ', an assertion key of the issuer\'s DID document');
    } catch (e) { return add('issuer key', false, e.message); }

    try {
      var ok = await verifySignature(cred, proof, key.publicKey);
      if (!add('signature', ok, ok ? 'Ed25519 signature over the RDFC-1.0 canonical form verifies'
        : 'Ed25519 signature does not match: the credential was changed after signing, or signed by another key')) return;
    } catch (e) { return add('signature', false, e.message || String(e)); }

    try {
      var status = await checkRevocation(cred, did, didInfo, data);
      add('status', status.ok, status.detail);
      result.revoked = !!status.revoked;
    } catch (e) { add('status', false, 'the revocation status could not be checked: ' + e.message); }

    try {
      var dates = checkDates(cred, proof, now);
      add('dates', dates.ok, dates.detail);
    } catch (e) { add('dates', false, e.message); }
  }

  var SOURCE_LABEL = {published: 'published issuer', demo: 'the DEMO issuer (demo-issuers.js)',
                      uploaded: 'UNOFFICIAL: trusted only by the list you uploaded'};

  function verdictOf(result) {
    var failed = result.checks.filter(function (c) { return !c.ok; });
    if (!result.checks.length || (failed.length && failed[0].name === 'JSON')) return 'ERROR';
    if (failed.length === 1 && result.revoked) return 'REVOKED';
    if (failed.length) return 'INVALID';
    return {published: 'VALID', demo: 'DEMO', uploaded: 'UNOFFICIAL'}[result.source] || 'INVALID';
  }

  function finish(result) {
    result.verdict = verdictOf(result);
    result.valid = result.verdict === 'VALID';
    var failed = result.checks.filter(function (c) { return !c.ok; })[0];
    if (failed) {
      result.summary = failed.name + ': ' + failed.detail;
    } else {
      var c = result.credential;
      result.summary = (subjectName(c) || 'The holder') + ' earned "' + c.credentialSubject.achievement.name +
        '" from ' + (c.issuer.name || c.issuer.id) + ', issued ' + c.validFrom.slice(0, 10) + '.';
    }
    return result;
  }

  // ---- links carrying the credential: #vc=base64url(deflate-raw(json)) --------------------
  async function unpack(packed) {
    if (packed.length > LIMITS.linkChars) fail('the link is longer than ' + LIMITS.linkChars + ' characters');
    var bytes = await inflate(base64urlDecode(packed), 'deflate-raw', LIMITS.bytes,
                              'the credential in the link');
    return utf8(bytes);
  }

  // ---- the page -----------------------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var uploadedIssuers = [];
  var BANNER = {
    VALID: ['valid', 'VALID'],
    INVALID: ['invalid', 'INVALID'],
    REVOKED: ['invalid', 'REVOKED'],
    ERROR: ['error', 'ERROR'],
    DEMO: ['demo', 'DEMO - an example signed by the throwaway demo issuer, not a real certificate.'],
    UNOFFICIAL: ['unofficial', 'UNOFFICIAL - signed by an issuer you uploaded, NOT the published issuer of this course.']
  };

  function render(result) {
    var out = document.getElementById('result');
    out.textContent = '';
    var style = BANNER[result.verdict];
    var banner = el('div', 'banner ' + style[0]);
    banner.appendChild(el('strong', null, style[1]));
    banner.appendChild(el('span', null, ' ' + result.summary));
    out.appendChild(banner);
    if (result.credential && !result.checks.some(function (c) { return !c.ok; })) out.appendChild(facts(result.credential));
    out.appendChild(checkList(result.checks));
    out.setAttribute('data-verdict', result.verdict);
    out.setAttribute('data-valid', String(result.valid));
  }

  function facts(c) {
    var dl = el('dl', 'facts'), a = c.credentialSubject.achievement;
    [['Name', subjectName(c) || '-'], ['Achievement', a.name],
     ['Issuer', (c.issuer.name || '') + ' (' + c.issuer.id + ')'], ['Issued', c.validFrom],
     ['Credential ID', c.id], ['Criteria', (a.criteria || {}).narrative || '-']]
      .forEach(function (row) { dl.appendChild(el('dt', null, row[0])); dl.appendChild(el('dd', null, row[1])); });
    return dl;
  }

  function checkList(checks) {
    var ul = el('ul', 'checks');
    checks.forEach(function (c) {
      var li = el('li', c.ok ? 'ok' : 'fail');
      li.appendChild(el('span', 'mark', c.ok ? '\u2713' : '\u2717'));
      li.appendChild(el('strong', null, c.name + ': '));
      li.appendChild(el('span', null, c.detail));
      ul.appendChild(li);
    });
    return ul;
  }

  async function run(text, online) {
    document.getElementById('result').setAttribute('data-valid', 'pending');
    document.getElementById('result').setAttribute('data-verdict', 'pending');
    render(await verifyCredential(text, {online: online}));
  }

  function showTrusted() {
    function line(e) { return (e.name || '?') + ' - ' + e.did + (e.fetched ? ' (status as of ' + e.fetched + ')' : ''); }
    var published = publishedIssuers(), demo = demoIssuers();
    document.getElementById('trusted').textContent = published.length ? published.map(line).join('\n')
      : 'none yet (trusted-issuers.js is empty)';
    document.getElementById('demo-issuers').textContent = demo.length ? demo.map(line).join('\n') : 'none';
  }

  function onUpload(file) {
    var note = document.getElementById('extra-note');
    file.text().then(function (t) {
      try {
        var parsed = parseUploadedIssuers(t);
        uploadedIssuers = parsed.entries;
        note.textContent = (parsed.entries.length ? 'Also trusting, as UNOFFICIAL: ' +
          parsed.entries.map(function (e) { return (e.name || '?') + ' - ' + e.did; }).join(', ') : '') +
          (parsed.ignored.length ? ' Ignored (already published, the published data is used): ' +
          parsed.ignored.map(function (e) { return e.did; }).join(', ') : '');
      } catch (e) {
        uploadedIssuers = [];
        note.textContent = 'Not an issuer list: ' + e.message;
      }
    });
  }

  function openLink(input) {
    var m = /[#&]vc=([^&]*)/.exec(location.hash);
    if (!m) return;
    unpack(m[1]).then(function (t) {
      input.value = t;
      return run(t, defaultOnline());
    }).catch(function (e) {
      render(finish({checks: [{name: 'JSON', ok: false, detail: 'the verification link is damaged or refused (' + e.message + ')'}]}));
    });
  }

  function setup() {
    var input = document.getElementById('credential');
    var drop = document.getElementById('drop');
    function runFile(f) { if (f) f.text().then(function (t) { input.value = t; run(t, defaultOnline()); }); }
    showTrusted();
    document.getElementById('verify').addEventListener('click', function () { run(input.value, defaultOnline()); });
    document.getElementById('online').addEventListener('click', function () { run(input.value, true); });
    document.getElementById('file').addEventListener('change', function (ev) { runFile(ev.target.files[0]); });
    ['dragover', 'dragenter'].forEach(function (n) {
      drop.addEventListener(n, function (ev) { ev.preventDefault(); drop.classList.add('over'); });
    });
    drop.addEventListener('dragleave', function () { drop.classList.remove('over'); });
    drop.addEventListener('drop', function (ev) {
      ev.preventDefault();
      drop.classList.remove('over');
      runFile(ev.dataTransfer.files[0]);
    });
    document.getElementById('extra-issuer').addEventListener('change', function (ev) {
      if (ev.target.files[0]) onUpload(ev.target.files[0]);
    });
    document.getElementById('mode').textContent = defaultOnline()
      ? 'Served over the web: the issuer\'s DID document and status list are checked online automatically.'
      : 'Opened from disk: nothing is fetched unless you press "Check online".';
    openLink(input);
    document.body.setAttribute('data-ready', 'true');
  }

  window.inferlabVerify = {
    verifyCredential: verifyCredential, unpack: unpack, parseStrict: parseStrict,
    parseDidWeb: parseDidWeb, parseUploadedIssuers: parseUploadedIssuers, LIMITS: LIMITS,
    setUploadedIssuers: function (entries) { uploadedIssuers = entries; }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setup);
  else setup();
})();
