-- Addresses are compared lower-cased everywhere (`address::normalize`), and mailsync writes
-- them that way; a CRM writing `contact_emails` or `contact_visible_to` directly may not, and
-- `Alice@Customer.com` would then never match mail from alice@customer.com, nor be
-- backfilled. Whoever writes, these triggers store the address trimmed and lower-cased.
-- SQLite's lower() folds ASCII letters only: other letters must be written lower-cased.
-- Lower-casing an address another row already has fails the write: an address belongs to
-- one contact.

UPDATE OR IGNORE contact_emails SET email = lower(trim(email)) WHERE email != lower(trim(email));
UPDATE OR IGNORE contact_visible_to SET user_email = lower(trim(user_email))
WHERE user_email != lower(trim(user_email));

CREATE TRIGGER contact_emails_lower_case_on_insert AFTER INSERT ON contact_emails
WHEN NEW.email != lower(trim(NEW.email))
BEGIN
    UPDATE contact_emails SET email = lower(trim(NEW.email)) WHERE email = NEW.email;
END;

CREATE TRIGGER contact_emails_lower_case_on_update AFTER UPDATE OF email ON contact_emails
WHEN NEW.email != lower(trim(NEW.email))
BEGIN
    UPDATE contact_emails SET email = lower(trim(NEW.email)) WHERE email = NEW.email;
END;

CREATE TRIGGER contact_visible_to_lower_case_on_insert AFTER INSERT ON contact_visible_to
WHEN NEW.user_email != lower(trim(NEW.user_email))
BEGIN
    UPDATE contact_visible_to SET user_email = lower(trim(NEW.user_email))
    WHERE contact_id = NEW.contact_id AND user_email = NEW.user_email;
END;

CREATE TRIGGER contact_visible_to_lower_case_on_update AFTER UPDATE OF user_email ON contact_visible_to
WHEN NEW.user_email != lower(trim(NEW.user_email))
BEGIN
    UPDATE contact_visible_to SET user_email = lower(trim(NEW.user_email))
    WHERE contact_id = NEW.contact_id AND user_email = NEW.user_email;
END;

-- The event carries the address as it is stored, and an address the CRM changes in place is
-- a new address on the contact, to backfill like an added one.
DROP TRIGGER contact_events_address_added;
CREATE TRIGGER contact_events_address_added AFTER INSERT ON contact_emails
BEGIN
    INSERT INTO contact_events (kind, email, contact_id, at)
    VALUES ('address_added', lower(trim(NEW.email)), NEW.contact_id, unixepoch());
END;

CREATE TRIGGER contact_events_address_changed AFTER UPDATE OF email ON contact_emails
WHEN lower(trim(NEW.email)) != lower(trim(OLD.email))
BEGIN
    INSERT INTO contact_events (kind, email, contact_id, at)
    VALUES ('address_added', lower(trim(NEW.email)), NEW.contact_id, unixepoch());
END;
