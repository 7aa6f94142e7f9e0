"""Schema migrations, applied in order; `PRAGMA user_version` records how far a database is.

Append new migrations at the end; never edit one that has shipped. Statements may contain `;`
inside (triggers): they are split where SQLite says a statement is complete.
"""

MIGRATIONS: list[str] = [
    # 1: the first release
    """
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        next_counter INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE executions (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        project_id INTEGER NOT NULL REFERENCES projects(id),
        counter INTEGER NOT NULL,
        step TEXT NOT NULL,
        title TEXT,
        status TEXT NOT NULL,
        runner TEXT NOT NULL,
        image TEXT,
        command TEXT NOT NULL,
        parameters TEXT NOT NULL,
        code_version TEXT NOT NULL,
        environment TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        queued_at REAL,
        started_at REAL,
        ended_at REAL,
        exit_code INTEGER,
        reason TEXT,
        supervisor_pid INTEGER,
        supervisor_started REAL,
        heartbeat_at REAL,
        runner_state TEXT,
        stop_requested_at REAL,
        metadata_summary TEXT NOT NULL DEFAULT '{}',
        metadata_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (project_id, counter)
    );
    CREATE INDEX executions_status ON executions (status);
    CREATE VIRTUAL TABLE executions_search USING fts5(
        step, title, parameters, status, content='executions', content_rowid='id', tokenize='trigram'
    );
    CREATE TRIGGER executions_search_insert AFTER INSERT ON executions BEGIN
        INSERT INTO executions_search (rowid, step, title, parameters, status)
        VALUES (new.id, new.step, new.title, new.parameters, new.status);
    END;
    CREATE TRIGGER executions_search_update AFTER UPDATE OF step, title, parameters, status ON executions BEGIN
        INSERT INTO executions_search (executions_search, rowid, step, title, parameters, status)
        VALUES ('delete', old.id, old.step, old.title, old.parameters, old.status);
        INSERT INTO executions_search (rowid, step, title, parameters, status)
        VALUES (new.id, new.step, new.title, new.parameters, new.status);
    END;
    CREATE TRIGGER executions_search_delete AFTER DELETE ON executions BEGIN
        INSERT INTO executions_search (executions_search, rowid, step, title, parameters, status)
        VALUES ('delete', old.id, old.step, old.title, old.parameters, old.status);
    END;
    CREATE TABLE execution_inputs (
        execution_id INTEGER NOT NULL REFERENCES executions(id),
        name TEXT NOT NULL,
        position INTEGER NOT NULL,
        uri TEXT NOT NULL,
        datum_id TEXT,
        filename TEXT,
        sha256 TEXT,
        size INTEGER,
        PRIMARY KEY (execution_id, name, position)
    );
    CREATE INDEX execution_inputs_datum ON execution_inputs (datum_id);
    CREATE TABLE metadata (
        execution_id INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        count INTEGER NOT NULL,
        time REAL NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (execution_id, first_seq)
    ) WITHOUT ROWID;
    CREATE TABLE datums (
        id TEXT PRIMARY KEY,
        project_id INTEGER REFERENCES projects(id),
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'output',
        uri TEXT,
        producer_execution_id INTEGER REFERENCES executions(id),
        created_at REAL NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        properties TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX datums_sha256 ON datums (sha256);
    CREATE INDEX datums_producer ON datums (producer_execution_id);
    CREATE TABLE datum_aliases (
        project_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        datum_id TEXT NOT NULL REFERENCES datums(id),
        updated_at REAL NOT NULL,
        PRIMARY KEY (project_id, name)
    );
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (project_id, name)
    );
    CREATE TABLE dataset_versions (
        id INTEGER PRIMARY KEY,
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (dataset_id, name)
    );
    CREATE TABLE dataset_version_datums (
        version_id INTEGER NOT NULL REFERENCES dataset_versions(id),
        datum_id TEXT NOT NULL REFERENCES datums(id),
        PRIMARY KEY (version_id, datum_id)
    );
    """,
    # 2: deployments: versions of endpoints, their processes, aliases, request and vh_metadata metrics
    """
    CREATE TABLE deployments (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id),
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (project_id, name)
    );
    CREATE TABLE deployment_versions (
        id INTEGER PRIMARY KEY,
        deployment_id INTEGER NOT NULL REFERENCES deployments(id),
        name TEXT NOT NULL,
        code_version TEXT NOT NULL,
        env_mode TEXT NOT NULL,
        created_at REAL NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 0,
        UNIQUE (deployment_id, name)
    );
    CREATE TABLE deployment_endpoints (
        id INTEGER PRIMARY KEY,
        version_id INTEGER NOT NULL REFERENCES deployment_versions(id),
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        files TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'stopped',
        port INTEGER,
        pid INTEGER,
        pid_started REAL,
        server_pgid INTEGER,
        started_at REAL,
        reason TEXT,
        UNIQUE (version_id, name)
    );
    CREATE TABLE deployment_aliases (
        deployment_id INTEGER NOT NULL REFERENCES deployments(id),
        name TEXT NOT NULL,
        version_id INTEGER NOT NULL REFERENCES deployment_versions(id),
        mirror_to TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (deployment_id, name)
    );
    CREATE TABLE deployment_requests (
        endpoint_id INTEGER NOT NULL,
        second INTEGER NOT NULL,
        count INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        latencies BLOB NOT NULL,
        PRIMARY KEY (endpoint_id, second)
    ) WITHOUT ROWID;
    CREATE TABLE deployment_metadata (
        endpoint_id INTEGER NOT NULL,
        time REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX deployment_metadata_endpoint ON deployment_metadata (endpoint_id, time);
    CREATE TABLE deployment_mirror (
        deployment_id INTEGER NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        second INTEGER NOT NULL,
        count INTEGER NOT NULL,
        agreed INTEGER NOT NULL,
        PRIMARY KEY (deployment_id, source, target, second)
    ) WITHOUT ROWID;
    """,
    # 3: an endpoint's server is found again from its runner's own state, as an execution's run is
    """
    ALTER TABLE deployment_endpoints ADD COLUMN runner_state TEXT;
    UPDATE deployment_endpoints SET runner_state = json_object('pid', server_pgid, 'pgid', server_pgid)
        WHERE server_pgid IS NOT NULL;
    ALTER TABLE deployment_endpoints DROP COLUMN server_pgid;
    """,
    # 4: summaries written before NaN and infinity were stored as "nan", "inf" and "-inf" become valid JSON
    """
    UPDATE executions SET metadata_summary =
        replace(replace(replace(metadata_summary, '-Infinity', '"-inf"'), 'Infinity', '"inf"'), 'NaN', '"nan"')
        WHERE json_valid(metadata_summary) = 0;
    """,
    # 5: the step's commands as valohai.yaml writes them, parameters filled in, kept apart from the
    # job script (`command`) that runs them; NULL in rows from before, which show their script instead
    """
    ALTER TABLE executions ADD COLUMN commands TEXT;
    """,
]
