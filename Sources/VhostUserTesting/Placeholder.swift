enum FakeFrontendPlaceholder {}
