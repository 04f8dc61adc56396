"""Where documents live: the provider contract and the bundled providers.

``docsync.providers.base.Provider`` is the contract;
``docsync.providers.memory.InMemoryProvider`` keeps documents in the process
(tests, demos) and ``docsync.providers.orm.ORMProvider`` in the database.
"""
