//! The `tf.train.Example` protobuf, read and written by hand (it is four
//! small messages):
//! `Example{features=1: Features}`, `Features{feature=1: map<string, Feature>}`,
//! `Feature{bytes_list=1 | float_list=2 | int64_list=3}`, each list
//! `{value=1: repeated}` (floats and ints packed or not).

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    Bytes(Vec<Vec<u8>>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
}

pub type Example = HashMap<String, Feature>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("field runs past the end of its message")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next (field number, wire type, payload for length-delimited fields).
    fn field(&mut self) -> Result<(u64, u8, &'a [u8]), String> {
        let key = self.varint()?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        let payload = match wire {
            0 => {
                let start = self.pos;
                self.varint()?;
                &self.buf[start..self.pos]
            }
            1 => self.take(8)?,
            2 => {
                let n = self.varint()? as usize;
                self.take(n)?
            }
            5 => self.take(4)?,
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        Ok((field, wire, payload))
    }
}

/// Parses a serialized `tf.train.Example`. `Err` says what is malformed.
pub fn parse_example(bytes: &[u8]) -> Result<Example, String> {
    let mut example = Example::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (field, wire, features) = r.field()?;
        if field != 1 || wire != 2 {
            continue;
        }
        let mut fr = Reader::new(features);
        while !fr.done() {
            let (field, wire, entry) = fr.field()?;
            if field != 1 || wire != 2 {
                continue;
            }
            let (mut key, mut value) = (None, None);
            let mut er = Reader::new(entry);
            while !er.done() {
                match er.field()? {
                    (1, 2, k) => {
                        key = Some(
                            String::from_utf8(k.to_vec())
                                .map_err(|_| "feature name is not UTF-8")?,
                        )
                    }
                    (2, 2, v) => value = Some(parse_feature(v)?),
                    _ => {}
                }
            }
            if let (Some(k), Some(v)) = (key, value) {
                example.insert(k, v);
            }
        }
    }
    Ok(example)
}

fn parse_feature(bytes: &[u8]) -> Result<Feature, String> {
    let mut r = Reader::new(bytes);
    let mut feature = Feature::Bytes(Vec::new());
    while !r.done() {
        let (kind, wire, list) = r.field()?;
        if wire != 2 {
            continue;
        }
        let mut lr = Reader::new(list);
        feature = match kind {
            1 => {
                let mut values = Vec::new();
                while !lr.done() {
                    if let (1, 2, v) = lr.field()? {
                        values.push(v.to_vec());
                    }
                }
                Feature::Bytes(values)
            }
            2 => {
                let mut values = Vec::new();
                while !lr.done() {
                    match lr.field()? {
                        (1, 2, packed) if packed.len() % 4 == 0 => values.extend(
                            packed
                                .chunks_exact(4)
                                .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
                        ),
                        (1, 2, _) => {
                            return Err("packed float list is not a multiple of 4 bytes".into());
                        }
                        (1, 5, one) => values.push(f32::from_le_bytes(one.try_into().unwrap())),
                        _ => {}
                    }
                }
                Feature::Floats(values)
            }
            3 => {
                let mut values = Vec::new();
                while !lr.done() {
                    match lr.field()? {
                        (1, 2, packed) => {
                            let mut pr = Reader::new(packed);
                            while !pr.done() {
                                values.push(pr.varint()? as i64);
                            }
                        }
                        (1, 0, one) => values.push(Reader::new(one).varint()? as i64),
                        _ => {}
                    }
                }
                Feature::Ints(values)
            }
            _ => continue,
        };
    }
    Ok(feature)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, field: u64, payload: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Serializes features the way TensorFlow does (packed numeric lists).
pub fn encode_example(features: &[(String, Feature)]) -> Vec<u8> {
    let mut map = Vec::new();
    for (key, value) in features {
        let mut list = Vec::new();
        let kind = match value {
            Feature::Bytes(vs) => {
                for v in vs {
                    put_len_field(&mut list, 1, v);
                }
                1
            }
            Feature::Floats(vs) => {
                let packed: Vec<u8> = vs.iter().flat_map(|f| f.to_le_bytes()).collect();
                put_len_field(&mut list, 1, &packed);
                2
            }
            Feature::Ints(vs) => {
                let mut packed = Vec::new();
                for &v in vs {
                    put_varint(&mut packed, v as u64);
                }
                put_len_field(&mut list, 1, &packed);
                3
            }
        };
        let mut feature = Vec::new();
        put_len_field(&mut feature, kind, &list);
        let mut entry = Vec::new();
        put_len_field(&mut entry, 1, key.as_bytes());
        put_len_field(&mut entry, 2, &feature);
        put_len_field(&mut map, 1, &entry);
    }
    let mut example = Vec::new();
    put_len_field(&mut example, 1, &map);
    example
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_feature_kind() {
        let features = vec![
            (
                "0/image".to_string(),
                Feature::Bytes(vec![vec![1, 2, 3], vec![]]),
            ),
            (
                "0/action".to_string(),
                Feature::Floats(vec![0.5, -1.25, 3.0, 4.0]),
            ),
            ("len".to_string(), Feature::Ints(vec![30, -1, 1 << 40])),
        ];
        let parsed = parse_example(&encode_example(&features)).unwrap();
        assert_eq!(parsed.len(), 3);
        for (k, v) in features {
            assert_eq!(parsed[&k], v);
        }
    }

    #[test]
    fn reads_bytes_as_tensorflow_serializes_them() {
        // tf.train.Example(features=tf.train.Features(feature={'a': tf.train.Feature(
        //   float_list=tf.train.FloatList(value=[1.0]))})).SerializeToString()
        let tf_bytes = [
            0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x01, 0x61, 0x12, 0x08, 0x12, 0x06, 0x0a, 0x04, 0x00,
            0x00, 0x80, 0x3f,
        ];
        assert_eq!(
            parse_example(&tf_bytes).unwrap()["a"],
            Feature::Floats(vec![1.0])
        );
        assert_eq!(
            encode_example(&[("a".into(), Feature::Floats(vec![1.0]))]),
            tf_bytes
        );
    }

    #[test]
    fn packed_floats_that_are_not_whole_floats_are_refused() {
        // Same message with a 6-byte packed float list.
        let bad = [
            0x0a, 0x11, 0x0a, 0x0f, 0x0a, 0x01, 0x61, 0x12, 0x0a, 0x12, 0x08, 0x0a, 0x06, 0x00,
            0x00, 0x80, 0x3f, 0x00, 0x00,
        ];
        assert!(parse_example(&bad).unwrap_err().contains("multiple of 4"));
    }

    #[test]
    fn truncated_message_is_an_error_not_a_panic() {
        let bytes = encode_example(&[("k".into(), Feature::Bytes(vec![vec![7; 100]]))]);
        for cut in [1, 5, 50, bytes.len() - 1] {
            assert!(parse_example(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
