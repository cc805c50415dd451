-- Per-listener access log (issue 11): listeners keep their settings in the
-- spec jsonb column; existing listeners get the setting explicitly, disabled,
-- so every stored spec names it.
UPDATE listeners SET spec = spec || '{"access_log": {"enabled": false}}'::jsonb WHERE NOT spec ? 'access_log';
