"""Importers of other helpdesks' tickets: `exobot import rt` reads Request Tracker
(exobot.importer.rt_source), turns its tickets into ImportedTickets (rt_mapping) and hands
them to the ticket service one by one (runner)."""
