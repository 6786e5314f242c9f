// predict.to_mnist in the browser, for the static page (python -m mnist_keras.demo --static).
// The steps are to_mnist's, numbered as its docstring numbers them; docs/serving.md puts the two
// implementations side by side, and tests/test_static.py holds them together: a drawing's 28x28
// here differs from Python's by at most one grey level a pixel.
//
// An image is {height, width, data}: grey levels in a Float64Array, row by row.
"use strict";

const mnist = (() => {
  const BOX = 20; // the digit fits a 20x20 box ...
  const CANVAS = 28; // ... centred by its centre of mass in a 28x28 image
  const INK = 0.2; // a pixel above this fraction of the brightest one belongs to the digit's box
  const WORK_SIDE = 512; // larger pictures are shrunk first
  const PAPER_WINDOW = 2; // the background's window is the longer side over this
  const MAX_SIDE = 2000; // pixels a side of a picture, as the served demo allows

  function image(height, width, data = new Float64Array(height * width)) {
    return { height, width, data: data instanceof Float64Array ? data : Float64Array.from(data) };
  }

  // Python's round(): halves go to the even neighbour.
  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function median(values) {
    const sorted = Float64Array.from(values).sort();
    const middle = sorted.length >> 1;
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  }

  function border({ height, width, data }) {
    const values = [];
    for (let x = 0; x < width; x++) values.push(data[x], data[(height - 1) * width + x]);
    for (let y = 0; y < height; y++) values.push(data[y * width], data[y * width + width - 1]);
    return values;
  }

  function max({ data }) {
    let top = -Infinity;
    for (const value of data) top = Math.max(top, value);
    return top;
  }

  // Steps 1 and 6: TensorFlow's ResizeArea (tf.image.resize, method "area"): each output pixel
  // is the average of the input area it covers, partly covered pixels weighted by their share.
  function resize(source, scale) {
    if (scale === 1) return source;
    const height = Math.max(1, roundHalfEven(source.height * scale));
    const width = Math.max(1, roundHalfEven(source.width * scale));
    const rows = spans(source.height, height);
    const cols = spans(source.width, width);
    const norm = 1 / ((source.height / height) * (source.width / width));
    const out = image(height, width);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (const [i, wy] of rows[y]) {
          let row = 0;
          for (const [j, wx] of cols[x]) row += source.data[i * source.width + j] * wx;
          sum += row * wy;
        }
        out.data[y * width + x] = sum * norm;
      }
    }
    return out;
  }

  // For each of `size` output pixels, the input pixels it covers and how much of each.
  function spans(inSize, size) {
    const step = inSize / size;
    const result = [];
    for (let o = 0; o < size; o++) {
      const start = o * step;
      const end = (o + 1) * step;
      const covered = [];
      for (let i = Math.floor(start); i < Math.ceil(end); i++) {
        const weight = Math.min(i + 1, end) - Math.max(i, start);
        covered.push([Math.min(inSize - 1, i), weight]);
      }
      result.push(covered);
    }
    return result;
  }

  // Step 3: the picture without its strokes (a grayscale opening over a square window half the
  // longer side, the edge pixels repeated beyond the picture).
  function background(source) {
    const size = Math.max(3, Math.floor(Math.max(source.height, source.width) / PAPER_WINDOW)) | 1;
    const margin = size >> 1;
    const padded = pad(source, margin);
    const negate = (img) => image(img.height, img.width, img.data.map((v) => -v));
    const opened = dilate(negate(dilate(negate(padded), size)), size);
    const out = image(source.height, source.width);
    for (let y = 0; y < source.height; y++) {
      const from = (y + margin) * opened.width + margin;
      out.data.set(opened.data.subarray(from, from + source.width), y * source.width);
    }
    return out;
  }

  function pad(source, margin) {
    const out = image(source.height + 2 * margin, source.width + 2 * margin);
    for (let y = 0; y < out.height; y++) {
      const sy = Math.min(source.height - 1, Math.max(0, y - margin));
      for (let x = 0; x < out.width; x++) {
        const sx = Math.min(source.width - 1, Math.max(0, x - margin));
        out.data[y * out.width + x] = source.data[sy * source.width + sx];
      }
    }
    return out;
  }

  // The maximum over the size x size window centred on each pixel, cut at the edges: along the
  // rows, then along the columns.
  function dilate(source, size) {
    return transpose(windowMax(transpose(windowMax(source, size)), size));
  }

  function transpose({ height, width, data }) {
    const out = image(width, height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) out.data[x * height + y] = data[y * width + x];
    }
    return out;
  }

  // The maximum over the `size` pixels of each row centred on each pixel (`size` odd), from
  // maxima over 1, 2, 4, ... pixels, as predict._window_max computes it.
  function windowMax(source, size) {
    const { height, width } = source;
    const half = size >> 1;
    const out = image(height, width);
    const spans = new Float64Array(width + 2 * half);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < spans.length; x++) {
        spans[x] = source.data[y * width + Math.min(width - 1, Math.max(0, x - half))];
      }
      let span = 1;
      for (let length = spans.length; 2 * span <= size; length -= span, span *= 2) {
        for (let x = 0; x + span < length; x++) spans[x] = Math.max(spans[x], spans[x + span]);
      }
      for (let x = 0; x < width; x++) {
        out.data[y * width + x] = Math.max(spans[x], spans[x + size - span]);
      }
    }
    return out;
  }

  // Step 5: the box of the pixels above INK of the brightest one.
  function crop(source) {
    const threshold = INK * max(source);
    let top = source.height, bottom = -1, left = source.width, right = -1;
    for (let y = 0; y < source.height; y++) {
      for (let x = 0; x < source.width; x++) {
        if (source.data[y * source.width + x] > threshold) {
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
          left = Math.min(left, x);
          right = Math.max(right, x);
        }
      }
    }
    const out = image(bottom - top + 1, right - left + 1);
    for (let y = top; y <= bottom; y++) {
      const from = y * source.width + left;
      out.data.set(source.data.subarray(from, from + out.width), (y - top) * out.width);
    }
    return out;
  }

  // Step 7: the digit at the centre of a 28x28 canvas by its centre of mass, its brightest
  // pixel 255; grey levels rounded to integers as numpy rounds them (halves to even).
  function placeByMass(digit) {
    const scale = 255 / max(digit);
    let total = 0, rowMass = 0, colMass = 0;
    for (let y = 0; y < digit.height; y++) {
      for (let x = 0; x < digit.width; x++) {
        const value = digit.data[y * digit.width + x] * scale;
        total += value;
        rowMass += y * value;
        colMass += x * value;
      }
    }
    total = Math.max(total, 1e-6);
    // Rounded to 4 places first, as predict._place_by_mass does: a centre exactly halfway
    // between two pixels goes to the same side in both.
    const place = (center, n) => Math.min(CANVAS - n,
      Math.max(0, roundHalfEven(Math.round((CANVAS / 2 - center) * 1e4) / 1e4)));
    const top = place(rowMass / total, digit.height);
    const left = place(colMass / total, digit.width);
    const out = new Uint8Array(CANVAS * CANVAS);
    for (let y = 0; y < digit.height; y++) {
      for (let x = 0; x < digit.width; x++) {
        const value = roundHalfEven(digit.data[y * digit.width + x] * scale);
        out[(top + y) * CANVAS + left + x] = Math.min(255, Math.max(0, value));
      }
    }
    return out;
  }

  // One grayscale image of any size in MNIST form: 784 grey levels, a light digit on black.
  function toMnist(source) {
    let pixels = resize(source, Math.min(1, WORK_SIDE / Math.max(source.height, source.width)));
    if (median(border(pixels)) > 127) { // step 2: dark ink on light paper, a photo or a scan
      const paper = image(pixels.height, pixels.width, pixels.data.map((v) => 255 - v));
      const lighting = background(paper); // step 3
      pixels = image(paper.height, paper.width, paper.data.map((v, i) => v - lighting.data[i]));
    }
    const grain = median(border(pixels)); // step 4
    pixels = image(pixels.height, pixels.width, pixels.data.map((v) => Math.max(0, v - grain)));
    if (max(pixels) <= 0) return new Uint8Array(CANVAS * CANVAS);
    const cropped = crop(pixels);
    const fitted = resize(cropped, BOX / Math.max(cropped.height, cropped.width)); // step 6
    return placeByMass(fitted);
  }

  // A canvas's RGBA pixels as grey levels: the mean of red, green and blue, as predict's
  // decode_picture takes it (transparent parts were drawn on white paper first).
  function grayOf({ width, height, data }) {
    const out = image(height, width);
    for (let i = 0; i < width * height; i++) {
      out.data[i] = roundHalfEven((data[4 * i] + data[4 * i + 1] + data[4 * i + 2]) / 3);
    }
    return out;
  }

  return { toMnist, grayOf, image, MAX_SIDE };
})();

if (typeof module !== "undefined") module.exports = mnist; // Node, for a quick check by hand
