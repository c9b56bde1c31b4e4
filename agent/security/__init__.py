"""API access policy: address allowlist, lockout after failed authentications, maximum key age."""
