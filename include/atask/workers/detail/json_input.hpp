#pragma once
/// @file
/// JsonInput: what atask::try_put_json() finds behind a Worker& (a base of
/// every QueueSource, reached by a cross-cast), so that control planes can
/// put JSON items into a queue worker they know only by name, and Worker
/// itself knows nothing of JSON.

namespace boost::json {
class value;
}

namespace atask::detail {

class JsonInput {
 public:
  /// The item type converts from Boost.JSON.
  virtual bool json_items() const noexcept = 0;
  /// Converts and try_put()s; false when the queue is full.
  virtual bool try_put_json_item(const boost::json::value& item) = 0;

 protected:
  ~JsonInput() = default;
};

}  // namespace atask::detail
