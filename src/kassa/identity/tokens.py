"""Access tokens (ES256 JWTs), their signing keys and JWKS; opaque secret tokens.

Signing keys live in the database (private half encrypted with the secret key), so every
API process signs and verifies with the same keys. Rotation makes a new active key and
retires the old one, which stays published (and accepted) until every token it signed
has expired. Each process caches the keys and reloads on an unknown ``kid``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.identity.errors import InvalidToken
from kassa.identity.models import SigningKey

ISSUER = "kassa"
AUDIENCE = "kassa-api"
ALGORITHM = "ES256"
_ALPHABET = string.ascii_letters + string.digits
_CACHE_SECONDS = 60.0


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def random_token(prefix: str, length: int = 40) -> str:
    """``prefix`` + ``length`` base62 characters (≈238 bits for 40)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint of an EC key: the key id."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")
    )


@dataclass(frozen=True)
class _PublicKey:
    key: ec.EllipticCurvePublicKey
    publish_until: datetime | None


class KeyRing:
    def __init__(self, secret: bytes, clock: Clock, access_ttl: timedelta, rotate_after: timedelta):
        self._secret = secret
        self._clock = clock
        self.access_ttl = access_ttl
        self.rotate_after = rotate_after
        self._lock = threading.Lock()
        self._active: tuple[str, ec.EllipticCurvePrivateKey] | None = None
        self._public: dict[str, _PublicKey] = {}
        self._loaded_at = 0.0

    # ---- key management (runs inside the caller's transaction) -------------------------
    def ensure_active(self, session: Session) -> None:
        """Make sure a current key exists; rotate when the active one is due."""
        now = self._clock.now()
        active = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))).first()
        if active is None or active.created_at + self.rotate_after <= now:
            self.rotate(session)

    def rotate(self, session: Session) -> str:
        """Create a new active key; retire the old one (published until its tokens expire)."""
        session.execute(text("SELECT pg_advisory_xact_lock(7315604414)"))
        now = self._clock.now()
        session.execute(
            update(SigningKey)
            .where(SigningKey.retired_at.is_(None))
            .values(retired_at=now, publish_until=now + self.access_ttl + timedelta(minutes=1))
        )
        private = ec.generate_private_key(ec.SECP256R1())
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        kid = _thumbprint(jwk)
        jwk.update(kid=kid, use="sig", alg=ALGORITHM)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._secret),
        )
        session.add(
            SigningKey(
                kid=kid, algorithm=ALGORITHM, private_key=pem, public_jwk=jwk, created_at=now
            )
        )
        session.flush()
        self._loaded_at = 0.0
        return kid

    def _reload(self, session: Session) -> None:
        now = self._clock.now()
        rows = session.scalars(
            select(SigningKey).where(
                or_(SigningKey.retired_at.is_(None), SigningKey.publish_until > now)
            )
        ).all()
        public: dict[str, _PublicKey] = {}
        active: tuple[str, ec.EllipticCurvePrivateKey] | None = None
        for row in rows:
            key = ECAlgorithm.from_jwk(json.dumps(row.public_jwk))
            assert isinstance(key, ec.EllipticCurvePublicKey)
            public[row.kid] = _PublicKey(key, row.publish_until)
            if row.retired_at is None:
                private = serialization.load_pem_private_key(row.private_key, password=self._secret)
                assert isinstance(private, ec.EllipticCurvePrivateKey)
                active = (row.kid, private)
        with self._lock:
            self._public, self._active, self._loaded_at = public, active, time.monotonic()

    def _fresh(self, session: Session, force: bool = False) -> None:
        if force or time.monotonic() - self._loaded_at > _CACHE_SECONDS:
            self._reload(session)

    # ---- tokens -----------------------------------------------------------------------
    def issue_access_token(self, session: Session, user_id: str, org_id: str, sid: str) -> str:
        """A signed access token; ``sid`` names the session (refresh-token family) it
        belongs to, so ending the session ends the token too."""
        self._fresh(session)
        if self._active is None:
            self.ensure_active(session)
            self._fresh(session, force=True)
        assert self._active is not None
        kid, private = self._active
        now = self._clock.now()
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "org": org_id,
            "sid": sid,
            "iat": int(now.timestamp()),
            "exp": int((now + self.access_ttl).timestamp()),
            "jti": secrets.token_hex(16),
            "typ": "access",
        }
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": kid})

    def verify_access_token(self, session: Session, token: str) -> dict[str, Any]:
        """Claims of a valid token, or InvalidToken."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise InvalidToken(detail="Malformed token.") from None
        self._fresh(session)
        if kid not in self._public:
            self._fresh(session, force=True)
        public = self._public.get(str(kid))
        now = self._clock.now()
        if public is None or (public.publish_until is not None and public.publish_until <= now):
            raise InvalidToken(detail="Unknown or retired signing key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                public.key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "org"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(detail=f"Token rejected: {exc}.") from None
        if claims.get("typ") != "access" or int(claims["exp"]) <= int(now.timestamp()):
            raise InvalidToken(detail="Token expired.")
        return claims

    def jwks(self, session: Session) -> dict[str, Any]:
        now = self._clock.now()
        rows = session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.retired_at.is_(None), SigningKey.publish_until > now))
            .order_by(SigningKey.created_at.desc())
        ).all()
        return {"keys": [row.public_jwk for row in rows]}
