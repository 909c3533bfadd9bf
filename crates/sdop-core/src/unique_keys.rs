//! A deserializer wrapper that refuses a key repeated in one mapping, at any depth.
//!
//! YAML says a mapping's keys are unique (YAML 1.2.2 §3.2.1.1), and sdop reports a repeated one
//! instead of silently keeping the last. A derived struct refuses a repeated field itself, but
//! a map (tags, hyperparameters, environment, parameters, labels) keeps the last value. The
//! tree parse refuses repeats because building the tree does; the typed parse straight from the
//! text (the fast path) goes through this wrapper, so every mapping of every kind, present and
//! future, is checked without a field having to ask for it.
//!
//! Keys are compared as what they are: `1` and `"1"` are different YAML keys (as in the tree).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deserializes `T` from `inner`, failing on any mapping with a repeated key.
pub fn deserialize<'de, T, D>(inner: D) -> Result<T, D::Error>
where
    T: de::Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(Unique(inner))
}

/// The wrapped deserializer: every visitor it hands out is wrapped too.
struct Unique<D>(D);

/// A visitor whose maps, sequences, options, newtypes and enums are wrapped.
struct Wrap<V>(V);

/// A mapping that remembers the keys it has handed out.
struct Map<M> {
    inner: M,
    keys: Keys,
}

struct Seq<S>(S);

struct Enum<E>(E);

/// The keys one mapping has handed out, as hashes of the key typed as YAML types it (a string
/// `"1"` is not the integer `1`). A hash collision can only refuse a document, never pass a
/// repeat; the loader then parses it the careful way, which reports exactly.
#[derive(Default)]
struct Keys {
    seen: Vec<u64>,
    /// The key seen twice, as written.
    repeated: Option<String>,
}

impl Keys {
    fn note(&mut self, tag: u8, bytes: &[u8], shown: impl FnOnce() -> String) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        tag.hash(&mut hasher);
        bytes.hash(&mut hasher);
        let hash = hasher.finish();
        if self.seen.contains(&hash) {
            self.repeated.get_or_insert_with(shown);
        } else {
            self.seen.push(hash);
        }
    }
}

/// The methods of a deserializer that hands each call to `$this.$field`, with the visitor
/// replaced by `$wrapped` (an expression of `$this` and `$visitor`).
macro_rules! forward_deserializer {
    ($field:tt, $this:ident, $visitor:ident => $wrapped:expr) => {
        forward_deserializer!(@plain $field, $this, $visitor => $wrapped;
            deserialize_any, deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32,
            deserialize_i64, deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32,
            deserialize_u64, deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
            deserialize_str, deserialize_string, deserialize_bytes, deserialize_byte_buf,
            deserialize_option, deserialize_unit, deserialize_seq, deserialize_map,
            deserialize_identifier, deserialize_ignored_any);

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            $visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let $this = self;
            $this.$field.deserialize_unit_struct(name, $wrapped)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            $visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let $this = self;
            $this.$field.deserialize_newtype_struct(name, $wrapped)
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            $visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let $this = self;
            $this.$field.deserialize_tuple(len, $wrapped)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            len: usize,
            $visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let $this = self;
            $this.$field.deserialize_tuple_struct(name, len, $wrapped)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            $visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let $this = self;
            $this.$field.deserialize_struct(name, fields, $wrapped)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            $visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let $this = self;
            $this.$field.deserialize_enum(name, variants, $wrapped)
        }

        fn is_human_readable(&self) -> bool {
            self.$field.is_human_readable()
        }
    };
    (@plain $field:tt, $this:ident, $visitor:ident => $wrapped:expr; $($method:ident),*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $visitor: V) -> Result<V::Value, Self::Error> {
                let $this = self;
                $this.$field.$method($wrapped)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Unique<D> {
    type Error = D::Error;
    forward_deserializer!(0, this, visitor => Wrap(visitor));
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.0.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Unique(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Unique(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map {
            inner: map,
            keys: Keys::default(),
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Enum(data))
    }
}

/// Wraps the deserializer a seed is given.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Unique(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let value = self.inner.next_key_seed(KeySeed {
            seed,
            keys: &mut self.keys,
        })?;
        match self.keys.repeated.take() {
            Some(key) => Err(de::Error::custom(format_args!(
                "duplicate key `{key}`; a key may appear once per mapping"
            ))),
            None => Ok(value),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Enum<A::Variant>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, Enum(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Enum<A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(visitor))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap(visitor))
    }
}

/// The seed of a key: records what the key is while the real seed reads it.
struct KeySeed<'k, S> {
    seed: S,
    keys: &'k mut Keys,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(KeyDeserializer {
            inner: d,
            keys: self.keys,
        })
    }
}

/// The deserializer of one key: hands the key's visitor a recording visitor.
struct KeyDeserializer<'k, D> {
    inner: D,
    keys: &'k mut Keys,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDeserializer<'_, D> {
    type Error = D::Error;
    forward_deserializer!(inner, this, visitor => Recording::new(visitor, this.keys));
}

/// Notes the scalar a key visitor is given, then passes it on.
struct Recording<'k, V> {
    inner: V,
    keys: &'k mut Keys,
}

impl<'k, V> Recording<'k, V> {
    fn new(inner: V, keys: &'k mut Keys) -> Self {
        Recording { inner, keys }
    }
}

macro_rules! record_number {
    ($($method:ident($ty:ty) => $tag:literal as $wide:ty),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.keys.note($tag, &<$wide>::from(value).to_le_bytes(), || value.to_string());
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Recording<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    // An integer is one YAML integer whatever width it is visited at: widened first.
    record_number!(
        visit_i8(i8) => 1 as i128,
        visit_i16(i16) => 1 as i128,
        visit_i32(i32) => 1 as i128,
        visit_i64(i64) => 1 as i128,
        visit_i128(i128) => 1 as i128,
        visit_u8(u8) => 2 as u128,
        visit_u16(u16) => 2 as u128,
        visit_u32(u32) => 2 as u128,
        visit_u64(u64) => 2 as u128,
        visit_u128(u128) => 2 as u128,
        visit_f32(f32) => 3 as f64,
        visit_f64(f64) => 3 as f64,
    );

    fn visit_str<E: de::Error>(self, value: &str) -> Result<V::Value, E> {
        self.keys.note(0, value.as_bytes(), || value.to_string());
        self.inner.visit_str(value)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<V::Value, E> {
        self.keys.note(0, value.as_bytes(), || value.to_string());
        self.inner.visit_borrowed_str(value)
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<V::Value, E> {
        self.keys.note(0, value.as_bytes(), || value.clone());
        self.inner.visit_string(value)
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<V::Value, E> {
        self.keys
            .note(0, value, || String::from_utf8_lossy(value).into_owned());
        self.inner.visit_bytes(value)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, value: &'de [u8]) -> Result<V::Value, E> {
        self.keys
            .note(0, value, || String::from_utf8_lossy(value).into_owned());
        self.inner.visit_borrowed_bytes(value)
    }

    fn visit_byte_buf<E: de::Error>(self, value: Vec<u8>) -> Result<V::Value, E> {
        self.keys
            .note(0, &value, || String::from_utf8_lossy(&value).into_owned());
        self.inner.visit_byte_buf(value)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<V::Value, E> {
        self.keys.note(5, &[u8::from(value)], || value.to_string());
        self.inner.visit_bool(value)
    }

    fn visit_char<E: de::Error>(self, value: char) -> Result<V::Value, E> {
        let mut buffer = [0u8; 4];
        let text = value.encode_utf8(&mut buffer);
        self.keys.note(0, text.as_bytes(), || value.to_string());
        self.inner.visit_char(value)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.keys.note(6, &[], || "null".to_string());
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.keys.note(6, &[], || "null".to_string());
        self.inner.visit_unit()
    }

    // A key that is itself a collection is not compared (sdop's schemas have none); what is
    // inside it is checked like any value.
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Unique(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Unique(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            keys: Keys::default(),
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum(data))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        super::deserialize(yaml_serde::Deserializer::from_str(text)).map_err(|e| e.to_string())
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Spec {
        tags: BTreeMap<String, String>,
        #[serde(default)]
        items: Vec<BTreeMap<String, u32>>,
    }

    #[test]
    fn a_repeated_key_in_a_map_at_any_depth_is_refused() {
        // Without the wrapper the map keeps the last value: the repeat would go unnoticed.
        let plain: BTreeMap<String, String> = yaml_serde::from_str("a: 1\na: 2\n").unwrap();
        assert_eq!(plain["a"], "2");
        let err = parse::<Spec>("tags: {team: ml, team: ops}\n").unwrap_err();
        assert!(err.contains("duplicate key `team`"), "{err}");
        let err = parse::<Spec>("tags: {}\nitems:\n  - {x: 1}\n  - {y: 1, y: 2}\n").unwrap_err();
        assert!(err.contains("duplicate key `y`"), "{err}");
    }

    #[test]
    fn distinct_keys_and_keys_of_different_types_pass() {
        let spec =
            parse::<Spec>("tags: {team: ml, owner: ops}\nitems: [{x: 1}, {x: 2}]\n").unwrap();
        assert_eq!(spec.tags.len(), 2);
        assert_eq!(spec.items.len(), 2);
        // `1` and `"1"` are two keys in YAML, as in the tree parse.
        let map: yaml_serde::Mapping = parse("1: 1\n\"1\": 2\n").unwrap();
        assert_eq!(map.len(), 2);
        let err = parse::<yaml_serde::Mapping>("1: 1\n1: 2\n").unwrap_err();
        assert!(err.contains("duplicate key `1`"), "{err}");
    }

    #[test]
    fn untagged_and_buffered_values_are_checked_too() {
        #[derive(Deserialize, Debug)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Either {
            Text(String),
            Map(BTreeMap<String, String>),
        }
        let err = parse::<BTreeMap<String, Either>>("a: {k: 1, k: 2}\n").unwrap_err();
        assert!(err.contains("duplicate key `k`"), "{err}");
    }
}
