-- Full-text search over subject, body and attachment names. Contentless: the index holds
-- terms, not the text, which stays in `activities`. The read path decides who may match.
CREATE VIRTUAL TABLE activity_search USING fts5(
    subject, body, attachment_names,
    content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);

INSERT INTO activity_search (rowid, subject, body, attachment_names)
SELECT id, coalesce(subject, ''), coalesce(body, ''),
       coalesce((SELECT group_concat(file_name, ' ') FROM attachments t WHERE t.activity_id = activities.id), '')
FROM activities;

CREATE TRIGGER activities_leave_search AFTER DELETE ON activities BEGIN
    DELETE FROM activity_search WHERE rowid = old.id;
END;
