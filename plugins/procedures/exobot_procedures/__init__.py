"""Treasury procedures on record (join, leave, email, bank, service added or removed), told to
the member by mail, and the member directory behind the members-only scope. The plugin class
is `exobot_procedures.plugin.Procedures` (entry point `procedures`)."""
