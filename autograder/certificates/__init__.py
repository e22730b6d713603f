"""Certificates for finishing the course: completion rule, signed credentials, verification.

How the pieces fit (one concept per module, read them in this order):

``rule``         the completion rule - the one place to change what "finished" means
``progress``     reads the nbgrader gradebook and applies the rule (``progress`` command)
``multikey``     base58btc / Multikey: writing an Ed25519 public key as text
``didweb``       did:web: the issuer's DID bound to its domain, its DID document, fetching
``status_list``  revocation as a Bitstring Status List (one bit per credential, no reason)
``keys``         the issuer: DID, name, base URL, key set (outside the repo, 0600), rotation
``trust``        trust lists: published (VALID), demo (DEMO), user-supplied (UNOFFICIAL)
``publish``      ``keys publish``: the files the issuer hosts, and its trust-list entry
``contexts``     the bundled JSON-LD contexts and a loader that never uses the network
``limits``       input limits and strict JSON, before any JSON-LD work
``canon``        RDF Dataset Canonicalization (RDFC-1.0) with "safe mode" and a node limit
``proof``        the ``eddsa-rdfc-2022`` DataIntegrityProof: sign and verify
``credential``   the Open Badges 3.0 ``OpenBadgeCredential`` (VC 2.0) for one student
``links``        the short public URL, LinkedIn's "add to profile" link, the offline ``#vc=`` link
``pdf``          the printable certificate with its QR code (the short URL)
``registry``     the table of issued credentials beside nbgrader's (idempotent ``certify``)
``issuing``      ``certify``: the steps above for every eligible student
``verifier``     ``verify``: every check, each reported on its own line, and the verdict
``cli``          ``python -m autograder progress|certify|verify|revoke|keys``
``example``      regenerates the repository's demo credential and demo trust list
"""
