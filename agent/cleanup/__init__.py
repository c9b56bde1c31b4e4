"""Cleanup (`POST /api/v1/maintenance/cleanup`): old temporary files inside configured directories, Vigil's
data past its retention, and the database file (optimize, VACUUM), reported per category."""
