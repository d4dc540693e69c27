#![allow(dead_code)]
//! Minimal .npy files (little-endian float, C order) for exchanging arrays
//! with the Python reference scripts.

use std::path::Path;

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let text = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let pad = 64 - (10 + text.len() + 1) % 64;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&((text.len() + pad + 1) as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    bytes
}

fn write(path: &Path, descr: &str, shape: &[usize], len: usize, data: impl Iterator<Item = u8>) {
    assert_eq!(len, shape.iter().product::<usize>());
    let mut bytes = header(descr, shape);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

pub fn write_f32(path: &Path, values: &[f32], shape: &[usize]) {
    write(
        path,
        "<f4",
        shape,
        values.len(),
        values.iter().flat_map(|v| v.to_le_bytes()),
    );
}

pub fn write_f64(path: &Path, values: &[f64], shape: &[usize]) {
    write(
        path,
        "<f8",
        shape,
        values.len(),
        values.iter().flat_map(|v| v.to_le_bytes()),
    );
}

/// A float32 .npy: (shape, values).
pub fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{} is not a .npy file",
        path.display()
    );
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let text = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(
        text.contains("'descr': '<f4'"),
        "{}: not float32: {text}",
        path.display()
    );
    assert!(text.contains("'fortran_order': False"));
    let inner = &text[text.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = inner[..inner.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (shape, values)
}
