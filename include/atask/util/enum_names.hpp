#pragma once
/// @file
/// The one way an atask enum turns into a string and back (CONTRIBUTING.md,
/// API convention (b)).
///
/// An enum opts in with BOOST_DESCRIBE_ENUM next to its declaration; then
/// `to_string(e)` gives its name and `from_string<E>(s)` parses it:
///
/// @code
///   enum class Color : unsigned char { red, green };
///   BOOST_DESCRIBE_ENUM(Color, red, green)
///
///   to_string(Color::green);                  // "green"
///   atask::from_string<Color>("red");          // Color::red
///   atask::from_string<Color>("blue");         // std::nullopt
/// @endcode
///
/// The string is the enumerator's name. An enum whose names on the wire must
/// differ from its enumerators (a hyphen, another word) declares, in its own
/// namespace,
///
/// @code
///   constexpr std::string_view enum_name_override(Color c) noexcept {
///     return c == Color::red ? "dark-red" : "";   // "" = keep the enumerator's name
///   }
/// @endcode
///
/// and both functions use it (found by argument-dependent lookup). No atask
/// enum needs one today: every name equals its enumerator.
///
/// Thread safety: pure functions.

#include <boost/describe/enum.hpp>
#include <boost/describe/enumerators.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <optional>
#include <string_view>
#include <type_traits>

namespace atask {

/// An enum described with BOOST_DESCRIBE_ENUM (or BOOST_DESCRIBE_NESTED_ENUM).
template <class E>
concept DescribedEnum = std::is_enum_v<E> && boost::describe::has_describe_enumerators<E>::value;

/// The name of `e`: its enum_name_override if it has one, else the
/// enumerator's name; "?" for a value that is no enumerator.
template <DescribedEnum E>
constexpr std::string_view to_string(E e) noexcept {
  if constexpr (requires {
                  { enum_name_override(e) } -> std::convertible_to<std::string_view>;
                }) {
    const std::string_view n = enum_name_override(e);
    if (!n.empty()) return n;
  }
  std::string_view name = "?";
  boost::mp11::mp_for_each<boost::describe::describe_enumerators<E>>([&](auto d) {
    if (e == d.value) name = d.name;
  });
  return name;
}

/// The enumerator whose to_string() is `s`; nullopt for anything else
/// (the match is exact: case and spaces count).
template <DescribedEnum E>
constexpr std::optional<E> from_string(std::string_view s) noexcept {
  std::optional<E> found;
  boost::mp11::mp_for_each<boost::describe::describe_enumerators<E>>([&](auto d) {
    if (!found && to_string(d.value) == s) found = d.value;
  });
  return found;
}

/// Every enumerator of E, in declaration order.
template <DescribedEnum E>
constexpr auto enumerators() noexcept {
  using L = boost::describe::describe_enumerators<E>;
  std::array<E, boost::mp11::mp_size<L>::value> out{};
  std::size_t i = 0;
  boost::mp11::mp_for_each<L>([&](auto d) { out[i++] = d.value; });
  return out;
}

}  // namespace atask
