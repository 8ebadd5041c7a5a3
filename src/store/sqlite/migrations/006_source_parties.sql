-- What a rule may need later about each source's parties, for retroactive rules
-- (`mailsync rules apply`, and every reload): per party its domain and the SHA-256 of its
-- address, as a JSON array of [domain, hash] pairs. Addresses themselves are not kept for
-- parties that are not linked contacts: a new skip rule by domain or by address can still be
-- checked, but the store does not list who else was on the message.
ALTER TABLE activity_sources ADD COLUMN parties TEXT NOT NULL DEFAULT '[]';
