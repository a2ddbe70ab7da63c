// Beast is compiled once, here (BOOST_BEAST_SEPARATE_COMPILATION is a private
// definition of the atask_http target).
#include <boost/beast/src.hpp>
