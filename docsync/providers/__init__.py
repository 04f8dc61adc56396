"""Where documents live: the provider contract and the bundled providers.

``docsync.providers.base.Provider`` is the contract;
``docsync.providers.memory.InMemoryProvider`` keeps documents in the process
(tests, demos), ``docsync.providers.orm.ORMProvider`` in the database and
``docsync.providers.postgres.PostgresProvider`` in the same tables on
PostgreSQL, one round trip per sync.
"""
