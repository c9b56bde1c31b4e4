"""Schema migrations, applied in order by `PRAGMA user_version`; never edit a released step."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: API keys and config versions (foundation).
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        preview TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT,
        last_used REAL,
        expires_at REAL,
        revoked_at REAL
    );
    CREATE TABLE config_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        actor TEXT,
        reason TEXT,
        diff TEXT NOT NULL,
        sources TEXT NOT NULL
    );
    """,
    # 2: metrics history (agent/tsdb): series index, compressed chunks per tier, head segments (WAL).
    """
    CREATE TABLE tsdb_series (
        id INTEGER PRIMARY KEY,
        labels TEXT NOT NULL
    );
    CREATE TABLE tsdb_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tier INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        block_start INTEGER NOT NULL,
        min_t INTEGER NOT NULL,
        max_t INTEGER NOT NULL,
        points INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX tsdb_chunks_series ON tsdb_chunks (tier, series_id, block_start);
    CREATE INDEX tsdb_chunks_block ON tsdb_chunks (tier, block_start);
    CREATE TABLE tsdb_head_segments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        min_t INTEGER NOT NULL,
        max_t INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE tsdb_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 3: checks (state, results, state changes), incidents, and the audit log (a hash chain).
    """
    CREATE TABLE check_state (
        name TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        state TEXT,
        since REAL,
        fails INTEGER NOT NULL DEFAULT 0,
        passes INTEGER NOT NULL DEFAULT 0,
        last_result TEXT,
        paused_at REAL,
        paused_by TEXT,
        memo TEXT NOT NULL DEFAULT '{}',
        remediation TEXT NOT NULL DEFAULT '{}',
        heartbeat TEXT,
        incident_id INTEGER,
        updated_at REAL NOT NULL
    );
    CREATE TABLE check_results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        check_name TEXT NOT NULL,
        ts REAL NOT NULL,
        status TEXT NOT NULL,
        state TEXT,
        message TEXT NOT NULL,
        duration REAL NOT NULL,
        perfdata TEXT,
        details TEXT
    );
    CREATE INDEX check_results_name ON check_results (check_name, id);
    CREATE INDEX check_results_ts ON check_results (ts);
    CREATE TABLE check_transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        check_name TEXT NOT NULL,
        ts REAL NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX check_transitions_name ON check_transitions (check_name, ts);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        check_name TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        resolved_at REAL,
        created_by TEXT,
        assigned_to TEXT,
        notes TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX incidents_created ON incidents (created_at);
    CREATE INDEX incidents_check ON incidents (check_name, created_at);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        event_type TEXT NOT NULL,
        actor TEXT,
        remote TEXT,
        target TEXT,
        outcome TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_log_ts ON audit_log (ts);
    """,
    # 4: alerting (agent/alerting, agent/notify): rule group state, alert instances with the operator's
    # workflow, silences, maintenance periods, the notification outbox and the state of notification groups.
    """
    CREATE TABLE rule_group_state (
        group_key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        group_key TEXT NOT NULL,
        alertname TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        severity TEXT NOT NULL,
        value REAL,
        state TEXT NOT NULL,
        active_at REAL NOT NULL,
        fired_at REAL,
        resolved_at REAL,
        resolved_by TEXT,
        resolution TEXT,
        resolution_notes TEXT,
        preventive_measures TEXT,
        ack_by TEXT,
        ack_at REAL,
        ack_notes TEXT,
        assigned_to TEXT,
        estimated_resolution TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX alerts_open ON alerts (fingerprint) WHERE resolved_at IS NULL;
    CREATE INDEX alerts_resolved ON alerts (resolved_at);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE maintenance (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        started_at REAL NOT NULL,
        ends_at REAL,
        allowed_ips TEXT NOT NULL,
        notification_message TEXT NOT NULL DEFAULT '',
        auto_disable INTEGER NOT NULL,
        started_by TEXT,
        ended_at REAL,
        ended_by TEXT
    );
    CREATE INDEX maintenance_open ON maintenance (started_at) WHERE ended_at IS NULL;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        receiver TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT
    );
    CREATE INDEX outbox_receiver ON outbox (receiver, id);
    CREATE TABLE notification_groups (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 5: operations (issue 6): tasks, Vigil's own log events, API access policy state, health reports.
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        message TEXT,
        steps TEXT NOT NULL,
        logs TEXT NOT NULL,
        logs_dropped INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        params TEXT NOT NULL,
        created_by TEXT,
        scope TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        estimated_completion REAL,
        completed_at REAL
    );
    CREATE INDEX tasks_created ON tasks (created_at);
    CREATE INDEX tasks_unfinished ON tasks (status) WHERE completed_at IS NULL;
    CREATE INDEX tasks_completed ON tasks (completed_at) WHERE completed_at IS NOT NULL;
    CREATE TABLE log_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        level INTEGER NOT NULL,
        service TEXT NOT NULL,
        message TEXT NOT NULL,
        context TEXT NOT NULL
    );
    CREATE INDEX log_events_ts ON log_events (ts);
    CREATE INDEX audit_log_event_type ON audit_log (event_type, ts);
    CREATE INDEX audit_log_actor ON audit_log (actor, ts);
    CREATE TABLE api_cursor_secret (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        secret BLOB NOT NULL
    );
    CREATE TABLE auth_failures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        remote TEXT NOT NULL,
        reason TEXT NOT NULL,
        key_id TEXT,
        route TEXT
    );
    CREATE INDEX auth_failures_remote ON auth_failures (remote, ts);
    CREATE INDEX auth_failures_ts ON auth_failures (ts);
    CREATE TABLE lockouts (
        remote TEXT PRIMARY KEY,
        locked_at REAL NOT NULL,
        until REAL NOT NULL,
        failures INTEGER NOT NULL,
        lifted_at REAL,
        lifted_by TEXT
    );
    CREATE TABLE health_reports (
        id TEXT PRIMARY KEY,
        task_id TEXT,
        created_at REAL NOT NULL,
        completed_at REAL NOT NULL,
        created_by TEXT,
        overall TEXT NOT NULL,
        summary TEXT NOT NULL,
        report TEXT NOT NULL
    );
    CREATE INDEX health_reports_created ON health_reports (created_at);
    CREATE TABLE store_maintenance (
        name TEXT PRIMARY KEY,
        at REAL NOT NULL,
        duration REAL NOT NULL,
        details TEXT NOT NULL
    );
    SELECT 1;
    """,
]
