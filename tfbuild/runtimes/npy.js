// .npy files (format 1.0/2.0/3.0, little-endian, C order) read and written a batch of rows at
// a time, so tfjs_run.js holds one batch of samples in memory whatever the file's size.
// Inputs: float32 ('<f4') or int32 ('<i4'); outputs: float32.
'use strict';

const fs = require('fs');

function fail(message) {
  const error = new Error(message);
  error.expected = true; // a message for the user: no stack needed
  throw error;
}

const NPY_TYPES = {'<f4': {dtype: 'float32', Array: Float32Array}, '<i4': {dtype: 'int32', Array: Int32Array}};

function openNpy(name, file) {
  let fd;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    fail(`input '${name}': cannot open ${file} (${e.code || e.message})`);
  }
  const pre = Buffer.alloc(12);
  fs.readSync(fd, pre, 0, 12, 0);
  if (pre.readUInt8(0) !== 0x93 || pre.toString('latin1', 1, 6) !== 'NUMPY') fail(`${file} is not a .npy file`);
  const major = pre.readUInt8(6);
  const headerLen = major === 1 ? pre.readUInt16LE(8) : pre.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = Buffer.alloc(headerLen);
  fs.readSync(fd, header, 0, headerLen, start);
  const text = header.toString('latin1');
  const descr = /'descr':\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order':\s*(True|False)/.exec(text);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) fail(`${file}: unreadable .npy header ${text.trim()}`);
  const type = NPY_TYPES[descr[1]];
  if (!type) fail(`${file}: dtype ${descr[1]} is neither float32 ('<f4') nor int32 ('<i4')`);
  if (fortran[1] === 'True') fail(`${file}: Fortran-ordered arrays are not supported; save it C-ordered`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (dims.length === 0) fail(`${file}: a scalar is not a batch of samples`);
  const sampleSize = dims.slice(1).reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const bytes = fs.fstatSync(fd).size - offset;
  if (bytes !== dims.reduce((a, b) => a * b, 1) * 4) fail(`${file}: ${bytes} data bytes for shape [${dims}]`);
  return {name, fd, offset, shape: dims, sampleSize, ...type};
}

// Rows [start, start + count) as a fresh, aligned typed array.
function readRows(npy, start, count) {
  const data = new npy.Array(count * npy.sampleSize);
  const view = new Uint8Array(data.buffer);
  fs.readSync(npy.fd, view, 0, view.length, npy.offset + start * npy.sampleSize * 4);
  return data;
}

// Writes a float32 .npy of `rows` samples; the header waits for the first batch's shape.
class NpyWriter {
  constructor(file, rows) {
    this.file = file;
    this.rows = rows;
    this.fd = null;
  }

  append(shape, data) {
    if (this.fd === null) {
      this.sampleShape = shape.slice(1);
      this.fd = fs.openSync(this.file, 'w');
      fs.writeSync(this.fd, npyHeader([this.rows, ...this.sampleShape]));
    } else if (shape.slice(1).join(',') !== this.sampleShape.join(',')) {
      fail(`output shape changed between batches: [${shape.slice(1)}] after [${this.sampleShape}]`);
    }
    fs.writeSync(this.fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  close() {
    if (this.fd !== null) fs.closeSync(this.fd);
  }
}

function npyHeader(shape) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // The header (with the 10-byte preamble and trailing newline) is padded to 64 bytes.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const pre = Buffer.alloc(10);
  pre.writeUInt8(0x93, 0);
  pre.write('NUMPY', 1, 'latin1');
  pre.writeUInt8(1, 6);
  pre.writeUInt8(0, 7);
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1')]);
}

module.exports = {NpyWriter, openNpy, readRows};
