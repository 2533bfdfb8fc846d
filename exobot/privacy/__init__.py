"""The rights of a person: `exobot privacy export ADDRESS` and `exobot privacy erase ADDRESS`
(export.py, erase.py), over the database and every enabled plugin's data handlers."""
