"""Read (and write) MindSpore ``.ckpt`` checkpoints without MindSpore and without protobuf.

``mindspore.save_checkpoint`` writes protobuf (proto2) messages of this schema
(``mindspore/train/checkpoint.proto``)::

    message Checkpoint {
      message Value {
        required string tag = 1;                       // parameter name
        oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; }
      }
      repeated Value value = 1;
    }
    message TensorProto {
      repeated int64 dims = 1;                         // shape; [0] for a scalar
      required string tensor_type = 2;                 // "Float32", "Int64", "BFloat16", "str", ...
      required bytes tensor_content = 3;               // raw little-endian elements, C order
    }

One ``Checkpoint`` holding one ``Value`` is serialised per parameter and the messages are
concatenated, so the file is a sequence of top-level records ``0x0A <varint len> Value``
(which also parses as one ``Checkpoint``). The wire format is decoded here by hand: varints,
length-delimited fields, fixed 32/64-bit fields of unknown numbers are skipped. Nothing in the
file is executed or imported; only bytes are sliced and viewed as numpy arrays.

Rules taken from MindSpore's ``load_checkpoint``:

* Consecutive records with the same tag are slices of one large tensor (> 512 MiB): their
  contents are concatenated in order and the (full) ``dims`` of the last one apply.
* ``dims == [0]`` marks a scalar (one element, shape ``()``); an empty content with
  ``dims == [0]`` is an empty ``(0,)`` array.
* ``tensor_type == "str"`` holds a string (``numpy.array(str).tobytes()``, i.e. UTF-32-LE);
  it is returned as a Python ``str``.
* ``BFloat16`` is widened to float32 (numpy has no bfloat16).
* A trailing ``b"crc_num" + 10-byte big-endian CRC32`` (``crc_check=True``) is verified and
  stripped. Encrypted checkpoints (``enc_key``) cannot be read: they fail to parse.

Bad input (truncated or corrupt bytes, an unknown ``tensor_type``, a content size that does not
match the shape, a MapParameter) raises :class:`CheckpointError` naming the file and the byte
offset of the offending field.
"""
import binascii
import os
from collections import OrderedDict

import numpy as np

from ascendcv.utils.torch_checkpoint import CheckpointError

__all__ = ['CheckpointError', 'load_mindspore_checkpoint', 'save_mindspore_checkpoint',
           'encode_record', 'MINDSPORE_DTYPES']

# MindSpore tensor_type -> numpy dtype of the stored bytes (little endian). MindSpore 1.x
# spelled the unsigned types 'Uint8' ..., 2.x 'UInt8' ...; both are accepted.
MINDSPORE_DTYPES = {
    'Float16': '<f2', 'Float32': '<f4', 'Float64': '<f8', 'BFloat16': '<u2',
    'Int8': 'i1', 'Int16': '<i2', 'Int32': '<i4', 'Int64': '<i8',
    'UInt8': 'u1', 'UInt16': '<u2', 'UInt32': '<u4', 'UInt64': '<u8',
    'Uint8': 'u1', 'Uint16': '<u2', 'Uint32': '<u4', 'Uint64': '<u8',
    'Bool': '?',
}
_NUMPY_TO_MINDSPORE = {'float16': 'Float16', 'float32': 'Float32', 'float64': 'Float64',
                       'int8': 'Int8', 'int16': 'Int16', 'int32': 'Int32', 'int64': 'Int64',
                       'uint8': 'UInt8', 'uint16': 'UInt16', 'uint32': 'UInt32',
                       'uint64': 'UInt64', 'bool': 'Bool'}
_CRC_MARK = b'crc_num'
_CRC_TRAILER = len(_CRC_MARK) + 10
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Reader:
    """Protobuf wire-format cursor over ``buf[start:end]``; errors name the file and offset."""

    def __init__(self, buf, path, start=0, end=None):
        self.buf, self.path = buf, path
        self.pos, self.end = start, len(buf) if end is None else end

    def fail(self, msg, offset=None):
        at = self.pos if offset is None else offset
        return CheckpointError(f'{self.path}: not a valid MindSpore checkpoint at byte offset '
                               f'{at}: {msg}')

    def done(self):
        return self.pos >= self.end

    def varint(self):
        start, value, shift = self.pos, 0, 0
        while True:
            if self.pos >= self.end:
                raise self.fail('truncated varint (file or message ends inside it)', start)
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift >= 70:
                raise self.fail('varint longer than 10 bytes', start)

    def key(self):
        """(field number, wire type, offset of the key)."""
        at = self.pos
        key = self.varint()
        field, wire = key >> 3, key & 7
        if field == 0 or wire not in (_VARINT, _FIXED64, _LENGTH, _FIXED32):
            raise self.fail(f'invalid field key 0x{key:x} (field {field}, wire type {wire})', at)
        return field, wire, at

    def length_delimited(self):
        """(start, end) of a length-delimited payload, checked against the enclosing end."""
        at = self.pos
        n = self.varint()
        if n > self.end - self.pos:
            raise self.fail(f'length-delimited field of {n} bytes runs past the end of its '
                            f'message ({self.end - self.pos} bytes left): truncated or corrupt',
                            at)
        start = self.pos
        self.pos += n
        return start, self.pos

    def skip(self, wire, at):
        if wire == _VARINT:
            self.varint()
        elif wire == _LENGTH:
            self.length_delimited()
        else:
            n = 8 if wire == _FIXED64 else 4
            if self.pos + n > self.end:
                raise self.fail(f'truncated fixed{8 * n} field', at)
            self.pos += n

    def sub(self, start, end):
        return _Reader(self.buf, self.path, start, end)


def _int64(value):
    """Two's-complement reinterpretation of a decoded varint as int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_tensor(r):
    """TensorProto -> (dims list, tensor_type str, (content start, end), offset of dims)."""
    dims, ttype, content, dims_at = [], None, None, r.pos
    while not r.done():
        field, wire, at = r.key()
        if field == 1 and wire == _VARINT:
            dims.append(_int64(r.varint()))
        elif field == 1 and wire == _LENGTH:  # packed encoding, accepted as protobuf does
            packed = r.sub(*r.length_delimited())
            while not packed.done():
                dims.append(_int64(packed.varint()))
        elif field == 2 and wire == _LENGTH:
            s, e = r.length_delimited()
            try:
                ttype = bytes(r.buf[s:e]).decode('utf-8')
            except UnicodeDecodeError:
                raise r.fail('tensor_type is not UTF-8 text', s) from None
        elif field == 3 and wire == _LENGTH:
            content = r.length_delimited()
        elif field in (1, 2, 3):
            raise r.fail(f'TensorProto field {field} has wire type {wire}', at)
        else:
            r.skip(wire, at)
    if ttype is None or content is None:
        missing = 'tensor_type' if ttype is None else 'tensor_content'
        raise r.fail(f'TensorProto without its required {missing}', dims_at)
    return dims, ttype, content, dims_at


def _parse_value(r):
    """Checkpoint.Value -> (tag, tensor tuple or None, offset of the value)."""
    tag, tensor, start = None, None, r.pos
    while not r.done():
        field, wire, at = r.key()
        if field == 1 and wire == _LENGTH:
            s, e = r.length_delimited()
            try:
                tag = bytes(r.buf[s:e]).decode('utf-8')
            except UnicodeDecodeError:
                raise r.fail('parameter name (tag) is not UTF-8 text', s) from None
        elif field == 2 and wire == _LENGTH:
            tensor = _parse_tensor(r.sub(*r.length_delimited()))
        elif field == 3 and wire == _LENGTH:
            raise r.fail(f'entry {tag!r} is a MapParameter (maptensor), which is not supported',
                         at)
        elif field in (1, 2, 3):
            raise r.fail(f'Checkpoint.Value field {field} has wire type {wire}', at)
        else:
            r.skip(wire, at)
    if tag is None:
        raise r.fail('entry without its required parameter name (tag)', start)
    if tensor is None:
        raise r.fail(f'entry {tag!r} holds no tensor', start)
    return tag, tensor


def _decode_string(raw, path, tag):
    """``numpy.array(s).tobytes()`` (UTF-32-LE, NUL padded); UTF-8 text is accepted too."""
    if len(raw) % 4 == 0:
        try:
            return raw.decode('utf-32-le').rstrip('\x00')
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        raise CheckpointError(f'{path}: string entry {tag!r} is neither UTF-32 nor UTF-8 '
                              f'text') from None


def _to_array(path, tag, dims, ttype, raw, at):
    if ttype == 'str':
        return _decode_string(bytes(raw), path, tag)
    if ttype not in MINDSPORE_DTYPES:
        raise CheckpointError(f'{path}: entry {tag!r} (byte offset {at}) has unsupported '
                              f'tensor_type {ttype!r}; known: {sorted(MINDSPORE_DTYPES)} and '
                              f"'str'")
    if any(d < 0 for d in dims):
        raise CheckpointError(f'{path}: entry {tag!r} (byte offset {at}) has a negative '
                              f'dimension in its shape {dims}')
    dtype = np.dtype(MINDSPORE_DTYPES[ttype])
    if len(raw) % dtype.itemsize:
        raise CheckpointError(f'{path}: entry {tag!r} (byte offset {at}) has {len(raw)} content '
                              f'bytes, not a multiple of the {ttype} item size {dtype.itemsize}')
    count = len(raw) // dtype.itemsize
    shape = tuple(dims)
    if shape == (0,) and count == 1:  # MindSpore's scalar marker
        shape = ()
    expected = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if expected != count:
        raise CheckpointError(f'{path}: entry {tag!r} (byte offset {at}) has shape {list(dims)} '
                              f'({expected} elements) but {count} {ttype} elements of content: '
                              f'truncated or corrupt')
    arr = np.frombuffer(raw, dtype).reshape(shape)
    if ttype == 'BFloat16':
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(dtype.newbyteorder('='), copy=True)


def load_mindspore_checkpoint(path):
    """Read a MindSpore ``.ckpt`` file.

    Returns ``OrderedDict[name, numpy.ndarray]`` in file order (= ``parameters_and_names()``
    order of the saved network); ``str`` entries (``append_dict`` strings) are Python strings.
    Arrays keep the stored dtype (BFloat16 -> float32) and shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file does not exist')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise CheckpointError(f'{path}: empty file, not a MindSpore checkpoint')
    if len(data) >= _CRC_TRAILER and data[-_CRC_TRAILER:-10] == _CRC_MARK:
        stored, data = int.from_bytes(data[-10:], 'big'), data[:-_CRC_TRAILER]
        actual = binascii.crc32(data)
        if stored != actual:
            raise CheckpointError(f'{path}: CRC check failed (stored {stored}, computed '
                                  f'{actual} over {len(data)} bytes): the file is damaged')
    buf = memoryview(data)
    top = _Reader(buf, path)
    records = []  # (tag, dims, ttype, [content slices], offset)
    while not top.done():
        field, wire, at = top.key()
        if field != 1 or wire != _LENGTH:
            raise top.fail(f'expected a checkpoint entry (field 1, length-delimited), found field '
                           f'{field} with wire type {wire}; an encrypted, truncated or non-'
                           f'MindSpore file?', at)
        tag, (dims, ttype, (cs, ce), dims_at) = _parse_value(top.sub(*top.length_delimited()))
        if records and records[-1][0] == tag:  # a slice of a large tensor
            prev = records[-1]
            if prev[2] != ttype:
                raise top.fail(f'slices of entry {tag!r} disagree on tensor_type '
                               f'({prev[2]!r} vs {ttype!r})', at)
            prev[1], prev[3] = dims, prev[3] + [buf[cs:ce]]
        else:
            records.append([tag, dims, ttype, [buf[cs:ce]], at])
    out = OrderedDict()
    for tag, dims, ttype, parts, at in records:
        if tag in out:
            raise CheckpointError(f'{path}: entry {tag!r} (byte offset {at}) appears twice, '
                                  f'not as consecutive slices: corrupt checkpoint')
        raw = parts[0] if len(parts) == 1 else memoryview(b''.join(parts))  # no copy for one
        out[tag] = _to_array(path, tag, dims, ttype, raw, at)
    if not out:
        raise CheckpointError(f'{path}: holds no checkpoint entries')
    return out


# ------------------------------------------------------------------------------------------
# writer (tests, and exporting our weights in the MindSpore format)

def _varint(value):
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited field."""
    return _varint(number << 3 | _LENGTH) + _varint(len(payload)) + payload


def encode_record(tag, dims, tensor_type, content):
    """One top-level record (a serialised ``Checkpoint`` with one ``Value``), exactly as
    ``save_checkpoint`` writes it: dims unpacked, then tensor_type, then tensor_content."""
    tensor = b''.join(_varint(1 << 3 | _VARINT) + _varint(int(d)) for d in dims)
    tensor += _field(2, tensor_type.encode('utf-8')) + _field(3, bytes(content))
    return _field(1, _field(1, tag.encode('utf-8')) + _field(2, tensor))


def save_mindspore_checkpoint(path, tensors, slice_bytes=512 << 20, crc_check=False):
    """Write ``tensors`` (name -> numpy array or str) in ``mindspore.save_checkpoint``'s format.

    Arrays larger than ``slice_bytes`` are split into consecutive records of the same name along
    their flattened bytes (as MindSpore does for tensors > 512 MiB); ``crc_check`` appends the
    CRC32 trailer.
    """
    chunks = []
    for name, value in tensors.items():
        if isinstance(value, str):
            chunks.append(encode_record(name, [0], 'str', np.array(value).astype('<U').tobytes()))
            continue
        arr = np.asarray(value)
        ttype = _NUMPY_TO_MINDSPORE.get(arr.dtype.name)
        if ttype is None:
            raise ValueError(f'{name}: numpy dtype {arr.dtype} has no MindSpore tensor_type')
        raw = np.ascontiguousarray(arr, arr.dtype.newbyteorder('<')).tobytes()
        dims = list(arr.shape) if arr.ndim else [0]
        step = max(int(slice_bytes) // arr.itemsize * arr.itemsize, arr.itemsize)
        for start in range(0, max(len(raw), 1), step):
            chunks.append(encode_record(name, dims, ttype, raw[start:start + step]))
    data = b''.join(chunks)
    if crc_check:
        data += _CRC_MARK + binascii.crc32(data).to_bytes(10, 'big')
    with open(os.fspath(path), 'wb') as f:
        f.write(data)
    return path
