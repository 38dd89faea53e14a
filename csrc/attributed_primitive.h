// A fused primitive whose results depend on attributes besides its flags (the batch norm's eps, the
// spectral loss's gamma, the depthwise conv's stride and padding): they take part in equivalence
// (FlaggedPrimitive::same_attributes, for mx.compile). Attrs needs operator==.
#pragma once

#include "fused_primitive.h"

namespace dfnet4 {

template <class Base, class Attrs>
class AttributedPrimitive : public Base {
 public:
  AttributedPrimitive(mx::Stream stream, int flags, OpNames names, Attrs attrs)
      : Base(stream, flags, names), attrs_(attrs) {}

 protected:
  bool same_attributes(const FlaggedPrimitive& other) const override {
    return attrs_ == static_cast<const AttributedPrimitive&>(other).attrs_;
  }
  Attrs attrs_;
};

}  // namespace dfnet4
