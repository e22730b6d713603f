/*
 * inferlab certificate verifier - runs entirely in this browser tab, with no server.
 *
 * The same checks as `python -m autograder verify` (autograder/certificates/verifier.py):
 *   1. JSON         the text parses to one object
 *   2. structure    an OpenBadgeCredential under the VC 2.0 + Open Badges 3.0 contexts
 *   3. proof        an embedded DataIntegrityProof, cryptosuite eddsa-rdfc-2022
 *   4. issuer key   the proof's key (a did:key) is a published key of the course's issuer
 *   5. signature    Ed25519 (WebCrypto) over SHA-256(canonical proof config) ||
 *                   SHA-256(canonical document); canonical = RDFC-1.0 N-Quads (jsonld.js,
 *                   bundled in vendor/ld-bundle.js with the JSON-LD contexts - no network)
 *   6. revocation   the id is not on that issuer's revocation list
 *   7. dates        validFrom / proof created not in the future, validUntil not past
 *
 * Trusted issuers come from trusted-issuers.js (written by `python -m autograder keys publish`).
 */
(function () {
  'use strict';

  var VC_V2 = 'https://www.w3.org/ns/credentials/v2';
  var ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  var CLOCK_SKEW_MS = 5 * 60 * 1000;
  var DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

  // ---- multibase base58btc and did:key ------------------------------------------------------
  function base58Decode(text) {
    var bytes = [0];
    for (var i = 0; i < text.length; i++) {
      var value = ALPHABET.indexOf(text[i]);
      if (value < 0) throw new Error('"' + text[i] + '" is not a base58btc character');
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
    if (typeof text !== 'string' || text[0] !== 'z' || text.length < 2) {
      throw new Error("expected a multibase base58btc string starting with 'z'");
    }
    return base58Decode(text.slice(1));
  }

  function publicKeyFromVerificationMethod(vm) {
    if (typeof vm !== 'string' || vm.indexOf('did:key:') !== 0) {
      throw new Error('verificationMethod ' + JSON.stringify(vm) + ' is not a did:key');
    }
    var parts = vm.split('#');
    var multikey = parts[0].slice('did:key:'.length);
    if (parts.length !== 2 || parts[1] !== multikey) {
      throw new Error('a did:key verification method must be did:key:<key>#<key>');
    }
    var data = multibaseDecode(multikey);
    if (data.length !== 34 || data[0] !== 0xed || data[1] !== 0x01) {
      throw new Error('not an Ed25519 Multikey (expected multicodec 0xed01 + 32 bytes)');
    }
    return {controller: parts[0], publicKey: data.slice(2)};
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

  function checkProofShape(proof) {
    if (!proof || typeof proof !== 'object' || Array.isArray(proof)) {
      throw new Error("the credential has no proof object (expected one embedded 'proof')");
    }
    if (proof.type !== 'DataIntegrityProof') {
      throw new Error('unsupported proof type ' + JSON.stringify(proof.type) + ": expected 'DataIntegrityProof'");
    }
    if (proof.cryptosuite !== 'eddsa-rdfc-2022') {
      throw new Error('unknown cryptosuite ' + JSON.stringify(proof.cryptosuite) +
        ": this verifier supports only 'eddsa-rdfc-2022'");
    }
    ['verificationMethod', 'proofPurpose', 'proofValue', 'created'].forEach(function (f) {
      if (typeof proof[f] !== 'string' || !proof[f]) throw new Error("the proof has no '" + f + "'");
    });
    if (proof.proofPurpose !== 'assertionMethod') {
      throw new Error("proofPurpose is '" + proof.proofPurpose + "', expected 'assertionMethod'");
    }
    if (!DATETIME.test(proof.created)) throw new Error("proof 'created' is not an XML Schema dateTime");
    return proof;
  }

  async function verifySignature(cred, publicKey) {
    var proof = cred.proof;
    var unsecured = Object.assign({}, cred);
    delete unsecured.proof;
    var options = Object.assign({}, proof);
    delete options.proofValue;
    if ('@context' in options) {
      var ctx = [].concat(options['@context']), docCtx = [].concat(unsecured['@context']);
      if (JSON.stringify(docCtx.slice(0, ctx.length)) !== JSON.stringify(ctx)) {
        throw new Error("the proof's @context does not match the credential's");
      }
      unsecured['@context'] = options['@context'];
      delete options['@context'];
    }
    var signature;
    try { signature = multibaseDecode(proof.proofValue); } catch (e) {
      throw new Error('proofValue is not multibase base58btc: ' + e.message);
    }
    if (signature.length !== 64) return false;
    var data = await hashData(unsecured, options);
    var key = await crypto.subtle.importKey('raw', publicKey, {name: 'Ed25519'}, false, ['verify']);
    return crypto.subtle.verify({name: 'Ed25519'}, key, signature, data);
  }

  // ---- the checks ---------------------------------------------------------------------------
  function parseTime(value, what) {
    if (typeof value !== 'string' || !DATETIME.test(value)) {
      throw new Error(what + ' ' + JSON.stringify(value) + ' is not a date-time with a time zone');
    }
    return new Date(value);
  }

  function structure(cred) {
    if (!cred || typeof cred !== 'object' || Array.isArray(cred)) {
      throw new Error('a credential is a JSON object');
    }
    var ctx = [].concat(cred['@context']);
    if (ctx[0] !== VC_V2) throw new Error('the first @context must be ' + VC_V2 + ' (a VC 2.0 credential)');
    ctx.forEach(function (c) {
      if (typeof c !== 'string' || !Object.prototype.hasOwnProperty.call(InferlabLD.contexts, c)) {
        throw new Error('unknown @context ' + JSON.stringify(c) + ': only the bundled contexts are allowed');
      }
    });
    var types = [].concat(cred.type);
    ['VerifiableCredential', 'OpenBadgeCredential'].forEach(function (t) {
      if (types.indexOf(t) < 0) throw new Error("type does not include '" + t + "'");
    });
    if (typeof cred.id !== 'string') throw new Error('the credential has no id');
    if (!cred.issuer || typeof cred.issuer !== 'object' || typeof cred.issuer.id !== 'string') {
      throw new Error('the issuer must be a Profile object with an id');
    }
    var s = cred.credentialSubject;
    if (!s || typeof s !== 'object' || !s.achievement || typeof s.achievement.name !== 'string') {
      throw new Error('credentialSubject.achievement with a name is missing');
    }
    parseTime(cred.validFrom, 'validFrom');
    return 'OpenBadgeCredential (VC 2.0) ' + cred.id;
  }

  function subjectName(cred) {
    var ids = (cred.credentialSubject || {}).identifier || [];
    for (var i = 0; i < ids.length; i++) {
      if (ids[i].identityType === 'name' && !ids[i].hashed) return ids[i].identityHash;
    }
    return null;
  }

  function trustedIssuers(extra) {
    var published = (window.INFERLAB_TRUSTED_ISSUERS || {}).issuers || [];
    return published.concat(extra || []);
  }

  /** Verify credential JSON text; resolves to {valid, checks: [{name, ok, detail}], ...}. */
  async function verifyCredential(text, options) {
    options = options || {};
    var now = options.now ? new Date(options.now) : new Date();
    var trusted = trustedIssuers(options.extraIssuers);
    var result = {valid: false, checks: [], credential: null, issuer: null};
    function add(name, ok, detail) { result.checks.push({name: name, ok: ok, detail: detail}); return ok; }
    var cred;
    try { cred = JSON.parse(text); } catch (e) {
      add('JSON', false, 'not valid JSON (' + e.message + ')');
      return finish(result);
    }
    add('JSON', true, 'parsed');
    try { add('structure', true, structure(cred)); } catch (e) {
      add('structure', false, e.message);
      return finish(result);
    }
    result.credential = cred;
    var proof;
    try {
      proof = checkProofShape(cred.proof);
      add('proof', true, proof.type + ' / ' + proof.cryptosuite + ', created ' + proof.created);
    } catch (e) {
      add('proof', false, e.message);
      return finish(result);
    }
    var key;
    try { key = publicKeyFromVerificationMethod(proof.verificationMethod); } catch (e) {
      add('issuer key', false, e.message);
      return finish(result);
    }
    var profile = null;
    for (var i = 0; i < trusted.length; i++) {
      if ((trusted[i].verificationMethod || {}).id === proof.verificationMethod) profile = trusted[i];
    }
    if (!profile) {
      add('issuer key', false, key.controller + " is not a published key of this course's issuer (" +
        trusted.length + ' trusted key(s) known)');
    } else if (key.controller !== cred.issuer.id) {
      add('issuer key', false, "the proof's key belongs to " + key.controller +
        ', but the credential names issuer ' + cred.issuer.id);
      profile = null;
    } else {
      result.issuer = profile;
      add('issuer key', true, 'published key of "' + profile.issuer.name + '"' + (profile.demo ? ' (DEMO key)' : ''));
    }
    try {
      var ok = await verifySignature(cred, key.publicKey);
      add('signature', ok, ok ? 'Ed25519 signature over the RDFC-1.0 canonical form verifies'
        : 'Ed25519 signature does not match: the credential was changed after signing, or signed by another key');
    } catch (e) {
      add('signature', false, e.message || String(e));
    }
    if (profile) {
      var revoked = (profile.revoked || []).filter(function (r) { return r.id === cred.id; })[0];
      add('revocation', !revoked, revoked
        ? 'REVOKED on ' + (revoked.revokedAt || '?') + ': ' + (revoked.reason || 'no reason given')
        : "not on the issuer's revocation list (" + (profile.revoked || []).length + ' revoked)');
    }
    try {
      var problems = [];
      if (parseTime(cred.validFrom, 'validFrom') - now > CLOCK_SKEW_MS) problems.push('not valid before ' + cred.validFrom);
      if (parseTime(proof.created, 'proof created') - now > CLOCK_SKEW_MS) problems.push('proof created in the future');
      if ('validUntil' in cred && parseTime(cred.validUntil, 'validUntil') < now) problems.push('expired on ' + cred.validUntil);
      add('dates', problems.length === 0, problems.join('; ') ||
        'valid from ' + cred.validFrom + ', ' + ('validUntil' in cred ? 'until ' + cred.validUntil : 'no expiry'));
    } catch (e) {
      add('dates', false, e.message);
    }
    return finish(result);
  }

  function finish(result) {
    result.valid = result.checks.length > 0 && result.checks.every(function (c) { return c.ok; });
    if (result.valid) {
      var c = result.credential;
      result.summary = (subjectName(c) || 'The holder') + ' earned "' + c.credentialSubject.achievement.name +
        '" from ' + (c.issuer.name || c.issuer.id) + ', issued ' + c.validFrom.slice(0, 10) + '.';
    } else {
      var failed = result.checks.filter(function (c) { return !c.ok; })[0];
      result.summary = failed.name + ': ' + failed.detail;
    }
    return result;
  }

  // ---- links carrying the credential: #vc=base64url(deflate-raw(json)) --------------------
  async function unpack(packed) {
    var b64 = packed.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    return new Response(stream).text();
  }

  // ---- the page -----------------------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var extraIssuers = [];

  function render(result) {
    var out = document.getElementById('result');
    out.textContent = '';
    var banner = el('div', 'banner ' + (result.valid ? 'valid' : 'invalid'));
    banner.appendChild(el('strong', null, result.valid ? 'VALID' : 'INVALID'));
    banner.appendChild(el('span', null, ' ' + result.summary));
    out.appendChild(banner);
    if (result.valid && result.issuer && result.issuer.demo) {
      out.appendChild(el('div', 'banner demo', 'Signed with a throwaway DEMO key: an example, not a real certificate.'));
    }
    if (result.credential && result.valid) {
      var c = result.credential, dl = el('dl', 'facts');
      [['Name', subjectName(c) || '-'], ['Achievement', c.credentialSubject.achievement.name],
       ['Issuer', (c.issuer.name || '') + ' (' + c.issuer.id + ')'], ['Issued', c.validFrom],
       ['Credential ID', c.id], ['Criteria', ((c.credentialSubject.achievement.criteria || {}).narrative) || '-']]
        .forEach(function (row) { dl.appendChild(el('dt', null, row[0])); dl.appendChild(el('dd', null, row[1])); });
      out.appendChild(dl);
    }
    var ul = el('ul', 'checks');
    result.checks.forEach(function (c) {
      var li = el('li', c.ok ? 'ok' : 'fail');
      li.appendChild(el('span', 'mark', c.ok ? '\u2713' : '\u2717'));
      li.appendChild(el('strong', null, c.name + ': '));
      li.appendChild(el('span', null, c.detail));
      ul.appendChild(li);
    });
    out.appendChild(ul);
    out.setAttribute('data-valid', String(result.valid));
  }

  async function run(text) {
    document.getElementById('result').setAttribute('data-valid', 'pending');
    render(await verifyCredential(text, {extraIssuers: extraIssuers}));
  }

  function setup() {
    var input = document.getElementById('credential');
    var drop = document.getElementById('drop');
    var trustedList = document.getElementById('trusted');
    var issuers = trustedIssuers();
    trustedList.textContent = issuers.length
      ? issuers.map(function (p) { return p.issuer.name + (p.demo ? ' [demo key]' : '') + ' - ' + p.issuer.id; }).join('\n')
      : 'none (trusted-issuers.js is missing or empty)';
    document.getElementById('verify').addEventListener('click', function () { run(input.value); });
    document.getElementById('file').addEventListener('change', function (ev) {
      var f = ev.target.files[0];
      if (f) f.text().then(function (t) { input.value = t; run(t); });
    });
    ['dragover', 'dragenter'].forEach(function (n) {
      drop.addEventListener(n, function (ev) { ev.preventDefault(); drop.classList.add('over'); });
    });
    drop.addEventListener('dragleave', function () { drop.classList.remove('over'); });
    drop.addEventListener('drop', function (ev) {
      ev.preventDefault();
      drop.classList.remove('over');
      var f = ev.dataTransfer.files[0];
      if (f) f.text().then(function (t) { input.value = t; run(t); });
    });
    document.getElementById('extra-issuer').addEventListener('change', function (ev) {
      var f = ev.target.files[0];
      if (!f) return;
      f.text().then(function (t) {
        try {
          var p = JSON.parse(t);
          extraIssuers = p.issuers || [p];
          document.getElementById('extra-note').textContent = 'Also trusting: ' +
            extraIssuers.map(function (x) { return x.issuer.name + ' - ' + x.issuer.id; }).join(', ');
        } catch (e) {
          document.getElementById('extra-note').textContent = 'Not an issuer profile: ' + e.message;
        }
      });
    });
    var m = /[#&]vc=([A-Za-z0-9_-]+)/.exec(location.hash);
    if (m) {
      unpack(m[1]).then(function (t) {
        input.value = JSON.stringify(JSON.parse(t), null, 2);
        return run(input.value);
      }).catch(function (e) {
        render(finish({checks: [{name: 'link', ok: false, detail: 'the verification link is damaged (' + e.message + ')'}]}));
      });
    }
    document.body.setAttribute('data-ready', 'true');
  }

  window.inferlabVerify = {verifyCredential: verifyCredential, unpack: unpack, base58Decode: base58Decode};
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setup);
  else setup();
})();
