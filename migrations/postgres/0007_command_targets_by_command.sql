-- Find one target of a command by (command_seq, udid), not by command_seq alone.
--
-- Delivering and recording a command update the target `WHERE udid = $1 AND command_seq = $2`.
-- PostgreSQL's generic plan for that statement (sqlx prepares it, and after a few runs the
-- generic plan is used) picked the one-column index on command_seq, and so walked every target
-- of a command sent to 10,000 devices, for each device: 7 ms instead of 0.1 ms per update.
-- With the device in the index both indexes give the one row. The index also serves the
-- per-command status listing (ORDER BY udid).
DROP INDEX command_targets_by_command;
CREATE INDEX command_targets_by_command ON command_targets (command_seq, udid);
