"""What can be wrong with the input of an ingest.

Each error says which file (and line, where there is one) and what to do. The job records the
message as the failed update's reason; nothing else is changed.
"""

from __future__ import annotations

from edl.errors import EdlError


class IngestError(EdlError):
    """Bad input: the update is marked failed with this message."""


class SourceNotFoundError(IngestError):
    """The source URL names nothing that exists."""


class SourceRefusedError(IngestError):
    """The source may not be read by the job (scheme, address, credentials)."""


class CorruptArchiveError(IngestError):
    """An archive cannot be read."""


class UnsafeArchivePathError(IngestError):
    """An archive member would land outside the update's folder."""


class ArchiveBombError(IngestError):
    """An archive expands beyond the limits (ratio, total size, member count, nesting)."""


class EmptyFileError(IngestError):
    """A file has no bytes (or no header)."""


class MalformedFileError(IngestError):
    """A file does not parse in its format (wrong field count, bad JSON, …)."""


class EncodingError(IngestError):
    """A file has bytes that are not valid in the declared encoding."""


class UnknownFormatError(IngestError):
    """A file's format cannot be told from its name."""


class DuplicatePathError(IngestError):
    """Two source files would land on the same path in the update."""


class DeltaKeyError(IngestError):
    """A delta lacks the dataset's key columns."""
