-- A contact's feed is read newest first from the contact's own links: each link carries
-- its activity's date and an index orders them, so a page of any contact's activities is
-- read without walking the whole store (a quiet contact) or sorting all of a contact's mail
-- (a busy one). Dates never change once stored: retention erases content, not dates.
ALTER TABLE activity_contacts ADD COLUMN date INTEGER;
UPDATE activity_contacts
SET date = (SELECT date FROM activities a WHERE a.id = activity_contacts.activity_id);
CREATE INDEX activity_contacts_by_contact_date
    ON activity_contacts(contact_id, date DESC, activity_id DESC);
