"""Second factors as a person's devices make them: the code an authenticator app shows, and a
passkey's registration as a browser sends it (WebAuthn's JSON form, with a new P-256 key), for
rows of real credentials and registrations the server checks as it would a device's."""

from __future__ import annotations

import os
import time

from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import sha256, websafe_encode
from fido2.webauthn import AttestationObject, AttestedCredentialData, AuthenticatorData, CollectedClientData

TOTP_PERIOD = 30  # allauth's default, which settings keep


def totp_code(secret: str) -> str:
    """The code an authenticator app shows now; waits out the last seconds of a period, so
    the server checks it in the same one."""
    if TOTP_PERIOD - time.time() % TOTP_PERIOD < 2:
        time.sleep(2)
    return format_hotp_value(hotp_value(secret, int(time.time()) // TOTP_PERIOD))


def passkey_registration(
    *, challenge: str = websafe_encode(b"\0" * 32), origin: str = "http://localhost", rp_id: str = "localhost"
) -> dict:
    """What ``navigator.credentials.create`` answers for ``challenge`` (base64url, as the
    server's creation options give it): a passkey ("none" attestation, user verified)."""
    credential_id = os.urandom(16)
    public_key = ES256.from_cryptography_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    flags = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV | AuthenticatorData.FLAG.AT
    auth_data = AuthenticatorData.create(
        sha256(rp_id.encode()), flags, 0, AttestedCredentialData.create(b"\0" * 16, credential_id, public_key)
    )
    client_data = CollectedClientData.create(type="webauthn.create", challenge=challenge, origin=origin)
    return {
        "id": websafe_encode(credential_id),
        "rawId": websafe_encode(credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": websafe_encode(client_data),
            "attestationObject": websafe_encode(AttestationObject.create("none", auth_data, {})),
        },
        "clientExtensionResults": {"credProps": {"rk": True}},
    }
