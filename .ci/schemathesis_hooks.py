"""Loaded by .ci/schemathesis.sh (SCHEMATHESIS_HOOKS) into schemathesis 4.32.5.

The stateful phase starts its scenarios only from operations it deems "likely roots":
every POST with outgoing links whose inputs some operation produces. Two things go wrong
with the sandbox's document:

- its dependency inference reads the body field `contact_address` of `POST /v1/persons` (an
  Address object) as a reference to a "Contact" resource that nothing produces, so it never
  starts a scenario with `POST /v1/persons`;
- every other POST that has links (mobile number, binding, keys, challenges, change
  requests) needs the id of something created before, so started from random data it only
  ever answers 404 or 400, and the phase spends its budget there.

Every chain of the document begins with a person, so `POST /v1/persons` is the one root.
The other operations are reached through the links and are tested from random data by the
other phases.
"""

from schemathesis.specs.openapi import stateful


def _persons_is_the_root(operation, node, produced_anywhere):
    return operation.label == "POST /v1/persons"


stateful.is_likely_root_transition = _persons_is_the_root
