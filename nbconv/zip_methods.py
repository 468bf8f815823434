"""The compression methods nbconv inflates in the .npz files it reads (checkpoints, weights): stored and
deflated, what numpy's savez and savez_compressed write.

zipfile bounds the output of deflate by an entry's declared size, but runs bzip2 and LZMA unbounded: a few KiB
of bzip2 inflate to gigabytes in one call, whatever size the entry declares, before any size check can act.
So an archive holding such an entry is refused from its directory alone, before any entry is read.
"""
import zipfile

READ_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def unread_method(archive):
    """For an open zipfile.ZipFile: None when every entry is stored or deflated, else the reason to refuse it,
    naming the first other entry (its name without '.npy') and its method."""
    other = next((info for info in archive.infolist() if info.compress_type not in READ_METHODS), None)
    if other is None:
        return None
    name = other.filename[:-len(".npy")] if other.filename.endswith(".npy") else other.filename
    return (f"entry {name!r} uses compression method {other.compress_type}; nbconv reads .npz entries stored or "
            "deflated (numpy's savez, savez_compressed)")
