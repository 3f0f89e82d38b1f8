// Verifies a credential with Digital Bazaar's Data Integrity stack (jsonld-signatures,
// DataIntegrityProof, the eddsa-jcs-2022 cryptosuite): an implementation independent of Roam.
// Usage: node verify.mjs CREDENTIAL.json DID_DOCUMENT.json
// Prints {"verified": true|false, "error": "..."} and exits 0 when verified, 1 when not.
import {readFileSync} from 'node:fs';
import jsigs from 'jsonld-signatures';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {createVerifyCryptosuite} from '@digitalbazaar/eddsa-jcs-2022-cryptosuite';

const [credentialFile, didDocumentFile] = process.argv.slice(2);
const credential = JSON.parse(readFileSync(credentialFile, 'utf8'));
const didDocument = JSON.parse(readFileSync(didDocumentFile, 'utf8'));

// Offline: the only document this loader knows is the issuer's did:web document (the test
// fetched it from the running server) and the verification methods in it.
const documentLoader = async url => {
  if(url === didDocument.id) {
    return {contextUrl: null, documentUrl: url, document: didDocument};
  }
  const vm = (didDocument.verificationMethod || []).find(m => m.id === url);
  if(vm) {
    const document = {'@context': 'https://w3id.org/security/multikey/v1', ...vm};
    return {contextUrl: null, documentUrl: url, document};
  }
  throw new Error(`document loader: unknown document ${url}`);
};

const suite = new DataIntegrityProof({cryptosuite: createVerifyCryptosuite()});
const purpose = new jsigs.purposes.AssertionProofPurpose({controller: didDocument});
try {
  const result = await jsigs.verify(credential, {suite, purpose, documentLoader});
  const error = result.verified ? undefined : String(
    (result.error && (result.error.errors || [result.error]).map(e => e.message).join('; ')) ||
    'not verified');
  console.log(JSON.stringify({verified: result.verified, error}));
  process.exit(result.verified ? 0 : 1);
} catch(e) {
  console.log(JSON.stringify({verified: false, error: String(e && e.message || e)}));
  process.exit(1);
}
