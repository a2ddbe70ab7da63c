// Asio is compiled once, here (BOOST_ASIO_SEPARATE_COMPILATION is a public
// definition of the atask target), instead of in every translation unit.
#include <boost/asio/impl/src.hpp>
