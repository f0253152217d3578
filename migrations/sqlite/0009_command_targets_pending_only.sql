-- Pending targets get one index, with a condition SQLite checks without a temporary table.
--
-- SQLite evaluates `status IN (a, b, c)` (three values or more) by building a temporary
-- b-tree, and it evaluates a partial index's condition for the old and the new row of every
-- statement that changes a target: answering a command built four such tables. Two values
-- and an equality mean the same and are plain comparisons. Queries repeat the condition word
-- for word (store::pending!), as SQLite only uses a partial index when the query does.
--
-- command_targets_open (udid, status, command_seq) served the same lookups, which all ask for
-- pending targets; each status change rewrote an entry in it too.
DROP INDEX command_targets_open;
DROP INDEX command_targets_pending;
CREATE INDEX command_targets_pending ON command_targets (udid, command_seq)
    WHERE status IN ('queued', 'sent') OR status = 'not_now';
