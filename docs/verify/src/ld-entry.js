// Entry point of vendor/ld-bundle.js: jsonld.js plus the course's bundled JSON-LD contexts.
// It exposes one global, `InferlabLD`, used by ../verify.js:
//   InferlabLD.canonize(doc) -> Promise<string>   RDFC-1.0 canonical N-Quads, "safe mode"
//   InferlabLD.contexts                           {url: context}, the only documents it loads
import jsonld from 'jsonld';
import index from '../../../autograder/certificates/context_files/index.json';
import credentialsV2 from '../../../autograder/certificates/context_files/credentials-v2.jsonld';
import openBadges from '../../../autograder/certificates/context_files/ob-v3p0-context-3.0.3.jsonld';

const byFile = {
  'credentials-v2.jsonld': credentialsV2,
  'ob-v3p0-context-3.0.3.jsonld': openBadges,
};
const contexts = {};
for(const [url, file] of Object.entries(index)) {
  contexts[url] = byFile[file];
}

// A static document loader: a credential may only use the bundled contexts. Anything else is
// refused, so verifying never touches the network and nobody can swap a context under us.
async function documentLoader(url) {
  if(Object.prototype.hasOwnProperty.call(contexts, url)) {
    return {contextUrl: null, documentUrl: url, document: contexts[url]};
  }
  throw new Error(`unknown JSON-LD context ${url}: only the bundled contexts are allowed`);
}

async function canonize(doc) {
  // safe: true makes jsonld.js throw instead of silently dropping a property the contexts do not
  // define - otherwise such a property could be added or changed without breaking the signature.
  try {
    return await jsonld.canonize(doc, {
      algorithm: 'RDFC-1.0', format: 'application/n-quads', documentLoader, safe: true,
    });
  } catch(e) {
    throw new Error(explain(e));
  }
}

// jsonld.js reports safe-mode problems as "Safe mode validation error." with the detail in an
// event object; word them the way the Python verifier does.
function explain(e) {
  let cause = e;
  while(cause && cause.details && cause.details.cause) {
    cause = cause.details.cause;
  }
  const event = (e.details && e.details.event) || (cause.details && cause.details.event);
  if(event) {
    const d = event.details || {};
    if(d.property !== undefined) {
      return `property ${JSON.stringify(d.property)} is not defined by the credential's ` +
        'contexts, so it would not be signed';
    }
    if(d.type !== undefined || d.typeExpansionMap !== undefined) {
      return `type ${JSON.stringify(d.type)} is not defined by the contexts`;
    }
    return `${event.message || event.code} ${JSON.stringify(d)}`;
  }
  return cause.message || String(e);
}

globalThis.InferlabLD = {canonize, contexts, documentLoader};
