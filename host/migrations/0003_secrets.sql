-- Secrets at rest (see store/secrets.rs): `secret` and every entry of `previous_secrets` hold
-- sealed values (`enc:v1:…`); rows from before are sealed in place by the service at start.
-- Every rotated-out secret still inside its grace is kept (newest first, at most 3), not only
-- the last one: rotating twice within the grace no longer drops the oldest at once.

ALTER TABLE subscriptions ADD COLUMN previous_secrets TEXT NOT NULL DEFAULT '[]'; -- JSON [{"secret", "expires_at"}]

UPDATE subscriptions
SET previous_secrets = json_array(json_object('secret', previous_secret, 'expires_at', previous_secret_expires_at))
WHERE previous_secret IS NOT NULL AND previous_secret_expires_at IS NOT NULL;

ALTER TABLE subscriptions DROP COLUMN previous_secret;
ALTER TABLE subscriptions DROP COLUMN previous_secret_expires_at;
