//! Closed vocabularies as enums with one string mapping each, shared by every Flow crate
//! (the storage model, the queue engine, the use cases and the voice parser).

/// Declares an enum whose every variant has one wire and storage name.
///
/// Each variant is written `Variant = "name"`. The enum gets `ALL` (declaration order),
/// `as_str`, `parse`, `Display`, `FromStr` and serde under the same names, so a name is
/// spelled once and cannot drift between the API, the database and the docs. Further
/// derives (`Hash`, `PartialOrd`, `utoipa::ToSchema`, ...) go in the attributes.
#[macro_export]
macro_rules! string_enum {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vattr:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vattr])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and storage name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses a wire or storage name.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;
            fn from_str(name: &str) -> Result<Self, Self::Err> {
                Self::parse(name).ok_or_else(|| $crate::UnknownName {
                    vocabulary: stringify!($name),
                    name: name.to_owned(),
                })
            }
        }
    };
}

/// A name that is not in a [`string_enum!`] vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {vocabulary} '{name}'")]
pub struct UnknownName {
    /// The enum's type name.
    pub vocabulary: &'static str,
    /// What was given.
    pub name: String,
}

#[cfg(test)]
mod tests {
    string_enum! {
        /// A vocabulary for the test.
        pub enum Fruit {
            Apple = "apple",
            /// Names need not follow the variant's.
            BloodOrange = "blood-orange",
        }
    }

    #[test]
    fn names_round_trip_through_every_mapping() {
        for fruit in Fruit::ALL {
            assert_eq!(Fruit::parse(fruit.as_str()), Some(*fruit));
            assert_eq!(fruit.to_string(), fruit.as_str());
            assert_eq!(
                serde_json::to_value(fruit).unwrap(),
                serde_json::json!(fruit.as_str())
            );
            assert_eq!(fruit.as_str().parse::<Fruit>().unwrap(), *fruit);
        }
        assert_eq!(Fruit::BloodOrange.as_str(), "blood-orange");
        assert_eq!(
            serde_json::from_str::<Fruit>("\"blood-orange\"").unwrap(),
            Fruit::BloodOrange
        );
        let error = "pear".parse::<Fruit>().unwrap_err();
        assert_eq!(error.to_string(), "unknown Fruit 'pear'");
        assert!(serde_json::from_str::<Fruit>("\"pear\"").is_err());
    }
}
